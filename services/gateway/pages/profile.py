"""The client's profile (its own name and phone, the company's details) and messaging the business."""

from __future__ import annotations

import uuid

import falcon

from services.gateway import usecases
from services.gateway.forms import field, refusal, typed
from services.gateway.pages.base import Portal


class ProfilePage(Portal):
    def _show(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        session: dict,
        status: int = 200,
        error: str | None = None,
        typed: dict | None = None,
    ) -> None:
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        contact = next(c for c in client["contacts"] if c["id"] == session["contact_id"])
        business = self.brand(session["workspace_id"])["name"]
        self.page(
            req,
            resp,
            "profile.html",
            session,
            status=status,
            client=client,
            contact=contact,
            business=business,
            saved=req.get_param("saved") == "1",
            error=error,
            typed=typed or {},  # after a refusal, what was typed, not what is stored
            notifications=self.billing(req).get_notification_preferences(
                session["workspace_id"], session["contact_id"], client_id=session["client_id"]
            ),
            notifications_saved=req.get_param("notifications") == "saved",
            password=self.auth(req).password_status(session["contact_id"]),  # its link, where passwords are on
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._show(req, resp, self.session(req, resp))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        fields = usecases.PROFILE_FIELDS
        try:
            # what the form sends is saved as typed; a field the form leaves out is left as it is
            changes = {key: field(form, key, limit, again=True) for key, limit in fields.items() if key in form}
            saved = usecases.update_profile(self.billing(req), session, changes)
        except usecases.BadInput as exc:  # the profile page again, saying what to fix, with what was typed
            return self._show(req, resp, session, status=400, error=exc.detail, typed=typed(form, *fields))
        renamed = usecases.renamed_to(session, saved)
        if renamed is not None:  # the pages greet the contact by the new name
            req.context.sessions.renew(req, resp, name=renamed)
        raise falcon.HTTPSeeOther("/profile?saved=1")


class ContactBusiness(Portal):
    def _show(self, req: falcon.Request, resp: falcon.Response, session: dict, refused: dict | None = None) -> None:
        """The form; after a refusal (`refused`: forms.refusal) again, as a 400."""
        business = self.brand(session["workspace_id"])["name"]
        self.page(
            req,
            resp,
            "contact.html",
            session,
            status=400 if refused else 200,
            business=business,
            sent=req.get_param("sent") == "1",
            refused=refused or {},
            nonce=uuid.uuid4().hex,
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._show(req, resp, self.session(req, resp))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        title = "Write a subject and a message"
        nonce = field(form, "nonce", usecases.NONCE_MAX)
        try:
            subject = field(form, "subject", usecases.SUBJECT_MAX, title=title, again=True)
            message = field(form, "message", usecases.MESSAGE_MAX, title=title, again=True)
            usecases.message_business(
                self.billing(req),
                self.documents(req),
                session,
                subject,
                message,
                request_key=usecases.request_key(nonce, req.context.request_id),
            )
        except usecases.BadInput as exc:  # the form again, saying what to fix, with what was typed
            return self._show(req, resp, session, refusal("contact", exc, **typed(form, "subject", "message")))
        raise falcon.HTTPSeeOther("/contact?sent=1")
