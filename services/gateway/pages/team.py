"""The organisation's contacts, for its owners: who may sign in and as what, invitations by email, role
changes and removals. Billing decides every one of them (an owner, the last owner kept); these pages
only ask, and a refusal is billing's 403 or 409, shown as a page."""

from __future__ import annotations

from urllib.parse import urlencode

import falcon

from chassis.errors import Conflict, Invalid
from chassis.scope import ROLES
from services.gateway import usecases
from services.gateway.forms import field
from services.gateway.pages.base import Portal
from services.gateway.views import N_

# What each role may do, as the page explains it (translated in the template).
ROLE_LABELS = {
    "owner": N_("Owner"),
    "payer": N_("Payer"),
    "approver": N_("Approver"),
    "viewer": N_("Viewer"),
}
ROLE_HELP = {
    "owner": N_("Everything, and manages these contacts"),
    "payer": N_("Pays invoices and manages cards; sees everything"),
    "approver": N_("Accepts, declines and comments on quotes; sees everything"),
    "viewer": N_("Reads and downloads only"),
}
DONE = {
    "invited": N_("The invitation is on its way: they get an email with a sign-in link."),
    "role": N_("The role is changed. That person signs in again to use it."),
    "removed": N_("That person can no longer sign in."),
}


class TeamBase(Portal):
    """The contacts page, shown again with a message when billing refused a change (409, 422)."""

    def show(self, req, resp, session: dict, status: int = 200, error: str | None = None, form: dict | None = None):
        contacts = self.billing(req).list_team(session["workspace_id"], session["client_id"], session["contact_id"])
        self.page(
            req,
            resp,
            "team.html",
            session,
            status=status,
            contacts=contacts,
            roles=ROLES,
            role_labels=ROLE_LABELS,
            role_help=ROLE_HELP,
            done=DONE.get(req.get_param("done") or ""),
            error=error,
            form=form or {},
        )


class TeamPage(TeamBase):
    """Lists the contacts (owners only: billing refuses anyone else with a 403 page) and invites one."""

    def on_get(self, req, resp):
        self.show(req, resp, self.session(req, resp))

    def on_post(self, req, resp):
        """Invite: a new contact with portal access and a role, or a contact of the client given access again."""
        session = self.session(req, resp)
        form = self.form(req)
        data = {
            "email": field(form, "email", 254).strip(),
            "name": field(form, "name", 200, label="The name").strip(),
        }
        role = field(form, "role", 20)
        if role:
            data["role"] = role
        try:
            usecases.invite_contact(self.billing(req), session, data)
        except (Invalid, Conflict) as exc:  # the page again, with what was typed and why it was refused
            return self.show(req, resp, session, 422 if isinstance(exc, Invalid) else 409, exc.detail, data)
        raise falcon.HTTPSeeOther(f"/team?{urlencode({'done': 'invited'})}")


class TeamRole(TeamBase):  # POST only: a GET never changes anything
    def on_post(self, req, resp, contact_id: str):
        session = self.session(req, resp)
        role = field(self.form(req), "role", 20)
        try:
            usecases.change_contact_role(self.billing(req), session, contact_id, role)
        except (Invalid, Conflict) as exc:
            return self.show(req, resp, session, 422 if isinstance(exc, Invalid) else 409, exc.detail)
        raise falcon.HTTPSeeOther(f"/team?{urlencode({'done': 'role'})}")


class TeamRemove(TeamBase):
    def on_post(self, req, resp, contact_id: str):
        session = self.session(req, resp)
        try:
            usecases.remove_contact(self.billing(req), session, contact_id)
        except Conflict as exc:
            return self.show(req, resp, session, 409, exc.detail)
        raise falcon.HTTPSeeOther(f"/team?{urlencode({'done': 'removed'})}")


def add_team_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/team", TeamPage(rpc, config))
    app.add_route("/team/{contact_id}/role", TeamRole(rpc, config))
    app.add_route("/team/{contact_id}/remove", TeamRemove(rpc, config))
