"""The gateway's access log: tokens redacted, plain fast page views sampled, everything else logged."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from services.gateway.access_log import RedactingLogger

FAST, SLOW = timedelta(milliseconds=20), timedelta(seconds=2)


@pytest.fixture
def logger(monkeypatch):
    monkeypatch.setenv("ACCESS_LOG_SAMPLE", "5")
    monkeypatch.setenv("ACCESS_LOG_SLOW_MS", "250")
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", "%(m)s %(U)s %(s)s")
    made = RedactingLogger(cfg)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    made.access_log.addHandler(handler)
    made.lines = lines
    return made


def request(method: str, path: str, status: int, took: timedelta, log: RedactingLogger) -> None:
    resp = SimpleNamespace(status=f"{status} X", status_code=status, headers=[], sent=0, response_length=0)
    req = SimpleNamespace(method=method, path=path, query="", uri=path, version=(1, 1), headers=[])
    environ = {
        "REQUEST_METHOD": method,
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    log.access(resp, req, environ, took)


def test_plain_fast_page_views_are_logged_one_in_the_sample(logger):
    for _ in range(20):
        request("GET", "/dashboard", 200, FAST, logger)
    assert logger.lines == ["GET /dashboard 200"] * 4


@pytest.mark.parametrize(
    ("method", "status", "took"),
    [("POST", 303, FAST), ("GET", 404, FAST), ("GET", 500, FAST), ("GET", 200, SLOW), ("DELETE", 204, FAST)],
)
def test_changes_errors_and_slow_answers_are_always_logged(logger, method, status, took):
    for _ in range(3):
        request(method, "/invoices", status, took, logger)
    assert logger.lines == [f"{method} /invoices {status}"] * 3


def test_a_one_document_link_is_logged_without_its_token(logger):
    request("POST", "/i/secret-token/pay", 303, FAST, logger)
    assert logger.lines == ["POST /i/<token>/pay 303"]
