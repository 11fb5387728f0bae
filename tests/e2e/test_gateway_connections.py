"""The gateway keeps an idle keep-alive connection open for longer than the pauses between a client's
requests, so a request on a connection the client reuses is answered, not dropped."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e
IDLE = 3.0  # seconds: past gunicorn's own default keep-alive (2 s), well inside the gateway's


def test_a_connection_idle_between_requests_still_answers(stack):
    address = urlsplit(stack.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", "/login")
        first = connection.getresponse()
        assert (first.status, first.getheader("Connection")) == (200, "keep-alive"), first.getheaders()
        first.read()
        opened = connection.sock
        for path in ("/login", "/livez"):
            time.sleep(IDLE)  # a closed socket would fail this request: http.client does not reconnect
            connection.request("GET", path)
            answer = connection.getresponse()
            assert answer.status == 200, (path, answer.read()[:200])
            answer.read()
            assert connection.sock is opened  # the same connection carried every request
    finally:
        connection.close()
