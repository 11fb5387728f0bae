"""The gateway keeps an idle keep-alive connection open for longer than the pauses between a client's
requests, so a request on a connection the client reuses is answered, not dropped; and a body over the
size limit gets its 413 page, not a reset connection."""

from __future__ import annotations

import http.client
import socket
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


def _sign_in_form_of(address, size: int) -> tuple[bytes, bytes]:
    """The head and body of a sign-in form of `size` bytes (over the gateway's 64 KB limit)."""
    body = b"email=" + b"a" * size
    head = (
        f"POST /login HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _answer(client: socket.socket) -> tuple[int, str]:
    answer = http.client.HTTPResponse(client)
    answer.begin()
    return answer.status, answer.read().decode()


# gunicorn itself absorbs about 128 KB of a body left unread before it closes; these are beyond that
@pytest.mark.parametrize("size", [300_000, 1_000_000])
def test_a_body_over_the_limit_gets_its_413_page_while_the_client_is_still_sending(stack, size):
    """The client sends its body in pieces, as a slow uplink does; the gateway answers once it has it all."""
    address = urlsplit(stack.url)
    head, body = _sign_in_form_of(address, size)
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(head)
        for start in range(0, len(body), 16_384):
            client.sendall(body[start : start + 16_384])  # a reset connection fails here or at the read
            time.sleep(0.005)
        status, page = _answer(client)
    assert status == 413 and "Request too large" in page


def test_a_client_that_stops_sending_its_too_large_body_still_gets_the_413(stack):
    """The gateway waits a moment for the rest of the body, not for ever: its thread is not held."""
    address = urlsplit(stack.url)
    head, body = _sign_in_form_of(address, 300_000)
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(head + body[:20_000])  # and nothing more
        status, page = _answer(client)
    assert status == 413 and "Request too large" in page
