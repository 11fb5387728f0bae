"""Idempotency keys on the admin API: a repeated request with the same Idempotency-Key gets the first
answer and changes nothing; the same key for a different request is refused; keys of two workspaces
never meet."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from tests.integration.test_admin_api import PREFIX, admin, portalctl, snapshot  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def post(admin, who: str, path: str, body: dict, key: str) -> requests.Response:
    api = admin[who]
    return requests.post(
        f"{api.base}{PREFIX}{path}",
        json=body,
        timeout=20,
        headers={"Authorization": f"Bearer {api.key}", "Idempotency-Key": key},
    )


def test_a_repeated_create_with_the_same_key_makes_one_client(admin):
    key, name = f"create-{uuid.uuid4().hex}", f"Keyed {uuid.uuid4().hex[:6]}"
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(admin, "a", "/clients", {"name": name}, key)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    listed = admin["a"]("GET", "/clients", params={"limit": 500}, expect=200).json()
    assert sum(1 for c in (listed["items"] if isinstance(listed, dict) else listed) if c["name"] == name) == 1


def test_the_same_key_for_a_different_request_is_a_409_and_changes_nothing(admin):
    key = f"reuse-{uuid.uuid4().hex}"
    assert post(admin, "a", "/clients", {"name": "First use"}, key).status_code == 201
    before = snapshot(admin["db"])
    reused = post(admin, "a", "/clients", {"name": "Something else"}, key)
    assert reused.status_code == 409 and reused.headers["content-type"] == "application/problem+json"
    assert "different request" in reused.json()["detail"]
    assert snapshot(admin["db"]) == before


def test_two_workspaces_may_use_the_same_key_and_a_bad_key_is_a_400(admin):
    key = f"shared-{uuid.uuid4().hex}"
    mine = post(admin, "a", "/clients", {"name": "Same key A"}, key)
    theirs = post(admin, "b", "/clients", {"name": "Same key B"}, key)
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]
    before = snapshot(admin["db"])
    bad = post(admin, "a", "/clients", {"name": "Bad key"}, "no spaces allowed")
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert snapshot(admin["db"]) == before


def test_the_openapi_document_offers_the_header_on_every_change(admin):
    document = requests.get(f"{admin['a'].base}{PREFIX}/openapi.json", timeout=20).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation["parameters"]}
            keyed = method != "get" and "/refunds" not in path
            assert ("Idempotency-Key" in names) == keyed, (method, path)
