"""The OpenAPI document and the mounted admin routes come from one table; this keeps them in step
even if someone mounts an admin route by hand."""

import re

from services.gateway.admin import PREFIX, ROUTES, AdminResource, openapi_document
from services.gateway.app import GatewayConfig, create_app


def mounted_admin_routes() -> set[tuple[str, str]]:
    app = create_app(rpc=None, health_rpc=None, config=GatewayConfig())
    found = set()

    def walk(nodes):
        for node in nodes:
            if node.resource is not None and node.uri_template.startswith(PREFIX):
                path = re.sub(r"\{\w+\}", "{id}", node.uri_template[len(PREFIX) :])
                if isinstance(node.resource, AdminResource):
                    found.update((method, path) for method in node.resource.routes)
                elif path != "/openapi.json":
                    found.add(("?", path))  # an admin route outside the table
            walk(node.children)

    walk(app._router._roots)
    return found


def test_every_mounted_admin_route_is_documented_and_vice_versa():
    document = openapi_document()
    documented = {(method.upper(), path[len(PREFIX) :]) for path, ops in document["paths"].items() for method in ops}
    assert mounted_admin_routes() == documented == {(r.method, r.path) for r in ROUTES}


def test_request_bodies_reference_real_schemas():
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            body = operation.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[-1] in schemas, (path, ref)
    assert len({op["operationId"] for ops in document["paths"].values() for op in ops.values()}) == len(ROUTES)


def test_the_portal_api_is_mounted_exactly_as_documented():
    from services.gateway.portal_api import PREFIX as PORTAL
    from services.gateway.portal_api import ROUTES as PORTAL_ROUTES
    from services.gateway.portal_api import PortalApiResource, portal_openapi

    app = create_app(rpc=None, health_rpc=None, config=GatewayConfig())
    mounted = set()

    def walk(nodes):
        for node in nodes:
            if node.resource is not None and node.uri_template.startswith(PORTAL):
                assert isinstance(node.resource, PortalApiResource) or node.uri_template.endswith("/openapi.json"), (
                    node.uri_template
                )
                if isinstance(node.resource, PortalApiResource):
                    mounted.update((method, node.uri_template[len(PORTAL) :]) for method in node.resource.routes)
            walk(node.children)

    walk(app._router._roots)
    document = portal_openapi()
    documented = {(method.upper(), path[len(PORTAL) :]) for path, ops in document["paths"].items() for method in ops}
    assert mounted == documented == {(r.method, r.path) for r in PORTAL_ROUTES}
    assert document["paths"][PORTAL + "/invoices/{id}/pdf"]["get"]["responses"]["200"]["content"] == {
        "application/pdf": {"schema": {}}
    }
    assert document["paths"][PORTAL + "/bookings"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BookingIn"
    }


def test_each_route_makes_the_call_it_names_with_the_requests_idempotency_key():
    """A route's `name` (its operationId) is the RPC its call makes; a keyed route hands the request's key
    on, so a retry changes nothing twice."""
    from clients.billing import BillingClient
    from clients.documents import DocumentsClient
    from clients.payments import PaymentsClient
    from services.gateway.admin import Services

    body = {"amount": 5, "body": "Thanks", "author_name": "", "idempotency_key": "refund-1", "archived": False}
    for route in ROUTES:
        made = []

        def call(service, method, *args, **kwargs):
            made.append((service, method, args, kwargs))
            return {"id": "x"}

        key = "admin:ws1:key-1" if route.keyed else None
        services = Services(BillingClient(call), PaymentsClient(call), DocumentsClient(call), key)
        route.call(services, "ws1", {"id": "id1"}, body, {})
        named = [c for c in made if c[:2] == (route.service, route.name)]
        assert len(named) == 1, (route.method, route.path, made)
        service, method, args, kwargs = named[0]
        assert args[0] == "ws1", (route.method, route.path)
        if route.keyed:
            assert kwargs.get("idempotency_key") == key, (route.method, route.path)
        assert all(c[:2] == ("billing", "get_client") for c in made[: made.index(named[0])]), made
