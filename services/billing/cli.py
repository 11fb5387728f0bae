"""portalctl: the common admin tasks from a shell, over RPC to the billing service.

    portalctl workspace create --name "Acme" --email billing@acme.example [--currency USD]
    portalctl key create --workspace WS --name ci            (prints the key once)
    portalctl key revoke --workspace WS --key-id ID
    portalctl client create --workspace WS --name "Client" [--contact-email a@b.c --contact-name N --portal]
    portalctl contact add --workspace WS --client CL --email a@b.c [--name N] [--portal] [--role payer]
    portalctl contact role --workspace WS --contact CT --role owner|payer|approver|viewer
                                                               (e.g. the client's first owner; its sessions end)
    portalctl portal enable|disable --workspace WS --contact CT
    portalctl invoice create --workspace WS --client CL --line "Design:10:9500[:tax%]" [--due-in 30] [--send]
    portalctl invoice send --workspace WS --invoice INV
    portalctl contacts republish --workspace WS
    portalctl summaries repair --workspace WS                  (rebuild the clients' dashboard figures from the
                                                                ledger; lists any that had drifted)
    portalctl dead-letters list [--service S]                  (events a consumer gave up on, per service)
    portalctl dead-letters show --service S --id N              (the event and the last error)
    portalctl dead-letters replay --service S (--id N | --all)  (hand them to their consumer again)

AMQP_URI says where the broker is. Output is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlparse

from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from chassis import (
    remote_errors,  # noqa: F401 - business errors arrive as themselves
    settings,
)
from chassis.errors import ServiceError
from chassis.scope import CONTEXT_KEY as SCOPE_KEY
from chassis.scope import ROLES, Scope
from clients.auth import AuthClient
from clients.base import ServiceClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient


def parse_line(text: str) -> dict:
    parts = text.rsplit(":", 3) if text.count(":") >= 3 else text.rsplit(":", 2)
    if len(parts) < 3:
        raise argparse.ArgumentTypeError("a line is DESCRIPTION:QUANTITY:UNIT_PRICE_IN_CENTS[:TAX_PERCENT]")
    line = {"description": parts[0], "quantity": parts[1], "unit_price": int(parts[2])}
    if len(parts) == 4:
        line["tax_rate"] = parts[3]
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portalctl", description="Billing portal admin tasks")
    sub = parser.add_subparsers(dest="area", required=True)

    ws = sub.add_parser("workspace").add_subparsers(dest="action", required=True)
    create = ws.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--currency", default="USD")
    create.add_argument("--locale", default="en_US")
    create.add_argument("--timezone", default="UTC")

    key = sub.add_parser("key").add_subparsers(dest="action", required=True)
    for action in ("create", "revoke", "list"):
        p = key.add_parser(action)
        p.add_argument("--workspace", required=True)
        if action == "create":
            p.add_argument("--name", required=True)
        if action == "revoke":
            p.add_argument("--key-id", required=True)

    client = sub.add_parser("client").add_subparsers(dest="action", required=True)
    p = client.add_parser("create")
    p.add_argument("--workspace", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--currency")
    p.add_argument("--contact-email")
    p.add_argument("--contact-name", default="")
    p.add_argument("--portal", action="store_true", help="give the contact portal access")

    contact = sub.add_parser("contact").add_subparsers(dest="action", required=True)
    p = contact.add_parser("add")
    p.add_argument("--workspace", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--portal", action="store_true")
    p.add_argument("--role", choices=ROLES, default="payer")
    p = contact.add_parser("role")
    p.add_argument("--workspace", required=True)
    p.add_argument("--contact", required=True)
    p.add_argument("--role", choices=ROLES, required=True)

    portal = sub.add_parser("portal").add_subparsers(dest="action", required=True)
    for action in ("enable", "disable"):
        p = portal.add_parser(action)
        p.add_argument("--workspace", required=True)
        p.add_argument("--contact", required=True)

    invoice = sub.add_parser("invoice").add_subparsers(dest="action", required=True)
    p = invoice.add_parser("create")
    p.add_argument("--workspace", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--line", action="append", type=parse_line, required=True, dest="lines")
    p.add_argument("--due-in", type=int, help="payment terms in days")
    p.add_argument("--send", action="store_true")
    p = invoice.add_parser("send")
    p.add_argument("--workspace", required=True)
    p.add_argument("--invoice", required=True)

    contacts = sub.add_parser("contacts").add_subparsers(dest="action", required=True)
    p = contacts.add_parser("republish")
    p.add_argument("--workspace", required=True)

    summaries = sub.add_parser("summaries").add_subparsers(dest="action", required=True)
    p = summaries.add_parser("repair")
    p.add_argument("--workspace", required=True)

    letters = sub.add_parser("dead-letters").add_subparsers(dest="action", required=True)
    for action in ("list", "show", "replay"):
        p = letters.add_parser(action)
        p.add_argument("--service", choices=SERVICES, required=action != "list")
        if action == "show":
            p.add_argument("--id", type=int, required=True)
        if action == "replay":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--id", type=int)
            which.add_argument("--all", action="store_true")
    return parser


SERVICES = ("auth", "billing", "payments", "documents")


def stubs(cluster) -> dict[str, ServiceClient]:
    """Each service's typed stub (clients/), calling through nameko's cluster proxy."""

    def call(service: str, method: str, *args, **kwargs):
        return getattr(getattr(cluster, service), method)(*args, **kwargs)

    return {
        "auth": AuthClient(call),
        "billing": BillingClient(call),
        "payments": PaymentsClient(call),
        "documents": DocumentsClient(call),
    }


def dead_letters(args, services: dict[str, ServiceClient]):
    """Dead letters live in each service's own database, so each service answers for its own."""
    match args.action:
        case "list":
            names = [args.service] if args.service else SERVICES
            return {name: services[name].list_dead_letters() for name in names}
        case "show":  # show and replay require --service
            return services[args.service].get_dead_letter(args.id)
        case "replay":
            service = services[args.service]
            ids = (
                [args.id] if args.id is not None else [letter["id"] for letter in service.list_dead_letters(limit=1000)]
            )
            return [service.replay_dead_letter(letter_id) for letter_id in ids]


def contact_command(args, billing):
    if args.action == "add":
        data = {"email": args.email, "name": args.name, "portal_access": args.portal, "role": args.role}
        return billing.add_contact(args.workspace, args.client, data)
    return billing.update_contact(args.workspace, args.contact, {"role": args.role})  # role


def run(args, cluster):
    """The RPC call for each command."""
    services = stubs(cluster)
    billing = services["billing"]
    assert isinstance(billing, BillingClient)
    match (args.area, args.action):
        case ("workspace", "create"):
            return billing.create_workspace(
                {
                    "name": args.name,
                    "email": args.email,
                    "currency": args.currency,
                    "locale": args.locale,
                    "timezone": args.timezone,
                }
            )
        case ("key", "create"):
            return billing.create_api_key(args.workspace, args.name)
        case ("key", "revoke"):
            return billing.revoke_api_key(args.workspace, args.key_id)
        case ("key", "list"):
            return billing.list_api_keys(args.workspace)
        case ("client", "create"):
            data = {"name": args.name, **({"currency": args.currency} if args.currency else {})}
            if args.contact_email:
                data["contacts"] = [
                    {
                        "email": args.contact_email,
                        "name": args.contact_name,
                        "portal_access": args.portal,
                        "is_primary": True,
                    }
                ]
            return billing.create_client(args.workspace, data)
        case ("contact", _):
            return contact_command(args, billing)
        case ("portal", action):
            return billing.set_portal_access(args.workspace, args.contact, action == "enable")
        case ("invoice", "create"):
            data = {"client_id": args.client, "lines": args.lines, "send": args.send}
            if args.due_in is not None:
                data["payment_terms_days"] = args.due_in
            return billing.create_invoice(args.workspace, data)
        case ("invoice", "send"):
            return billing.send_invoice(args.workspace, args.invoice)
        case ("contacts", "republish"):
            return {"republished": billing.republish_contacts(args.workspace)}
        case ("summaries", "repair"):
            return billing.repair_client_summaries(args.workspace)
        case ("dead-letters", _):
            return dead_letters(args, services)
    raise SystemExit(f"unknown command {args.area} {args.action}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Acting for one workspace: the services' databases hold every call to it (row-level security).
    workspace = getattr(args, "workspace", None)
    context = {SCOPE_KEY: Scope(workspace).to_context()} if workspace else None
    try:
        with ClusterRpcProxy(
            {"AMQP_URI": settings.amqp_uri()}, context_data=context, timeout=float(settings.env("RPC_TIMEOUT", "20"))
        ) as cluster:
            result = run(args, cluster)
    except ServiceError as exc:
        print(json.dumps({"error": exc.title, "detail": exc.detail, "errors": exc.fields}), file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(json.dumps({"error": exc.exc_type, "detail": exc.value}), file=sys.stderr)
        return 1
    except (RpcTimeout, UnknownService, OSError) as exc:
        broker = urlparse(settings.amqp_uri())
        print(
            f"portalctl: cannot reach the {getattr(args, 'service', None) or 'billing'} service ({exc!r}); "
            f"is it running? The broker is {broker.hostname}:{broker.port or 5672}{broker.path} (AMQP_URI)",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
