"""The typed stubs in clients/ are each service's RPCs as the service declares them: the same methods,
with the same parameters (names, kinds, defaults, types), and they make exactly the call they name."""

import inspect

import pytest

from chassis.nameko_ext import ServiceBase
from clients.auth import AuthClient
from clients.base import ServiceClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.auth.service import AuthService
from services.billing.service import BillingService
from services.documents.service import DocumentsService
from services.payments.service import PaymentsService

PAIRS = [
    (AuthClient, AuthService),
    (BillingClient, BillingService),
    (PaymentsClient, PaymentsService),
    (DocumentsClient, DocumentsService),
]


def rpcs(service) -> dict:
    return {
        name: getattr(service, name)
        for name in dir(service)
        if any(type(e).__name__ == "Rpc" for e in getattr(getattr(service, name), "nameko_entrypoints", ()))
    }


def shape(function) -> list[tuple]:
    """Each parameter but self: (name, kind, default, type)."""
    return [
        (p.name, p.kind, p.default, str(p.annotation))
        for p in list(inspect.signature(function).parameters.values())[1:]
    ]


@pytest.mark.parametrize("stub, service", PAIRS, ids=[service.name for _, service in PAIRS])
def test_every_rpc_has_a_stub_with_its_exact_signature(stub, service):
    declared = rpcs(service)
    stubs = {name: getattr(stub, name) for name in declared if hasattr(stub, name)}
    assert set(stubs) == set(declared)
    own = {name for name in dir(stub) if not name.startswith("_") and callable(getattr(stub, name))}
    assert own == set(declared)  # and no stub for an RPC the service does not have (ping etc. included)
    for name, method in declared.items():
        assert shape(stubs[name]) == shape(method), name
    assert stub.service == service.name


@pytest.mark.parametrize("stub, service", PAIRS, ids=[service.name for _, service in PAIRS])
def test_each_stub_makes_the_call_it_names(stub, service):
    for name, method in rpcs(service).items():
        made = []
        params = list(inspect.signature(method).parameters.values())[1:]
        required = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
        optional = [p for p in params if p not in required]
        args = [f"arg-{p.name}" for p in required]
        kwargs = {p.name: f"kw-{p.name}" for p in optional}
        getattr(stub(lambda *call, **keywords: made.append((call, keywords))), name)(*args, **kwargs)
        # what a call needs goes by position, what it may leave out by name
        assert made == [((service.name, name, *args), kwargs)], name


def test_the_operations_every_service_answers_are_in_the_base_stub():
    declared = rpcs(ServiceBase)
    assert set(declared) == {
        name for name in dir(ServiceClient) if callable(getattr(ServiceClient, name)) and not name.startswith("_")
    }
    for name, method in declared.items():
        assert shape(getattr(ServiceClient, name)) == shape(method), name
