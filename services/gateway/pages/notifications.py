"""Which emails a contact gets: the notifications form on the profile page, and the one-click
unsubscribe link (RFC 8058) in every email that may be turned off.

The link is `/unsubscribe?token=...` with a token documents signed (chassis/unsubscribe.py): it names
one contact and one category and needs no session. A GET only shows what it would do and a button
(mail scanners open links; a GET must never act); a POST, from that button or from a mail program's
one-click request, turns that one category off. The token is the credential, so the POST needs no
CSRF token and may come from another site."""

from __future__ import annotations

import falcon

from chassis import unsubscribe
from chassis.clock import Clock
from chassis.scope import Scope
from services.gateway import usecases
from services.gateway.forms import field
from services.gateway.pages.base import Base, Portal
from services.gateway.views import N_

PATH = "/unsubscribe"
# billing's categories (services/billing/notifications.py), as the form and the link name them
CATEGORIES = (
    ("invoices", N_("New invoices")),
    ("quotes", N_("New quotes")),
    ("reminders", N_("Payment reminders")),
    ("receipts", N_("Receipts and refunds for payments made by others at your company")),
    ("monthly_statement", N_("A monthly statement of account")),
    ("comment_replies", N_("Replies to your comments")),
    ("bookings", N_("Booking confirmations and cancellations")),
)
LABELS = dict(CATEGORIES)
EMAIL_LOCALES = (("", N_("The company's language")), ("en_US", "English"), ("de_DE", "Deutsch"))


class NotificationSettings(Portal):
    """The profile page's notifications form: a checkbox per category (a box left unticked is off,
    so the form works without a script) and the email language."""

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        data: dict[str, bool | str | None] = {name: field(form, name, 10) == "on" for name, _ in CATEGORIES}
        language = field(form, "email_locale", 20)
        if language not in dict(EMAIL_LOCALES):
            raise falcon.HTTPBadRequest(title="Check the form", description="Choose a language from the list.")
        data["email_locale"] = language or None
        saved = usecases.update_notifications(self.billing(req), session, data)
        if usecases.language_changed(session, saved):  # the next page speaks it, in this session too
            req.context.sessions.renew(req, resp, locale=saved["email_locale"])
        raise falcon.HTTPSeeOther("/profile?notifications=saved#notifications")


class Unsubscribe(Base):
    public = True  # the signed token is the credential

    def __init__(self, rpc, config, clock: Clock):
        super().__init__(rpc, config)
        self.clock = clock  # a token's expiry is checked against the app's clock

    def _link(self, req) -> dict:
        """What the token names, or a clear refusal that changes nothing."""
        key = unsubscribe.secret()
        if key is None:
            raise falcon.HTTPServiceUnavailable(
                title="Unsubscribe links are not set up", description="Sign in and change your notifications instead."
            )
        token = req.get_param("token") or ""
        try:
            link = unsubscribe.check(key, token, self.clock())
        except unsubscribe.Refused:
            raise falcon.HTTPBadRequest(
                title="This unsubscribe link is not valid",
                description="The link may be incomplete or altered. Sign in to change which emails you get.",
            ) from None
        if link["category"] not in LABELS:
            raise falcon.HTTPBadRequest(
                title="This unsubscribe link is not valid",
                description="The link may be incomplete or altered. Sign in to change which emails you get.",
            )
        # the link is the caller: the services' databases hold this call to its client
        req.context.scope = Scope(link["workspace_id"], link["client_id"])
        return {**link, "token": token}

    def _show(self, req, resp, link: dict, done: bool) -> None:
        choices = self.billing(req).get_notification_preferences(
            link["workspace_id"], link["contact_id"], client_id=link["client_id"]
        )
        self.render(
            resp,
            "unsubscribe.html",
            workspace_id=link["workspace_id"],
            locale=choices["email_locale"] or self._client_locale(req, link),
            email=choices["email"],
            label=LABELS[link["category"]],
            token=link["token"],
            done=done,
        )

    def _client_locale(self, req, link: dict) -> str:
        """A contact without a locale of its own was emailed in its client's: the page speaks it too."""
        client = self.billing(req).get_client(link["workspace_id"], link["client_id"])
        return client.get("locale") or "en_US"

    def on_get(self, req, resp):
        self._show(req, resp, self._link(req), done=False)

    def on_post(self, req, resp):
        link = self._link(req)
        self.billing(req).update_notification_preferences(
            link["workspace_id"],
            link["contact_id"],
            {link["category"]: False},
            client_id=link["client_id"],
            via="unsubscribe",
        )
        self._show(req, resp, link, done=True)


def add_notification_routes(app: falcon.App, rpc, config, clock: Clock) -> None:
    app.add_route("/profile/notifications", NotificationSettings(rpc, config))
    app.add_route(PATH, Unsubscribe(rpc, config, clock))
