"""The patches to nameko (chassis/nameko_patches.py): applied once however often they are asked for,
and refused on a nameko they were not written for."""

import re
import socket
import subprocess
import sys
import tomllib

import nameko.rpc
import nameko.web.handlers
import nameko.web.server
import pytest
from nameko.messaging import QueueConsumer

from chassis import fast_rpc, nameko_patches
from tests.unit.conftest import ROOT


def test_applying_twice_patches_once():
    nameko_patches.apply()
    patched = {name: getattr(QueueConsumer, name) for name in ("ack_message", "requeue_message", "handle_message")}
    nameko_patches.apply()

    assert {name: getattr(QueueConsumer, name) for name in patched} == patched
    for name in ("ack_message", "requeue_message"):
        wrapped = getattr(QueueConsumer, name).__wrapped__  # nameko's own method, wrapped exactly once
        assert not hasattr(wrapped, "__wrapped__")
        assert wrapped.__module__ == "nameko.messaging"
    assert nameko.rpc.Responder is fast_rpc.FastResponder
    assert nameko.rpc.Rpc.check_signature is fast_rpc.check_signature
    assert nameko.web.handlers.HttpRequestHandler.check_signature is fast_rpc.check_signature
    assert QueueConsumer.handle_message is fast_rpc.handle_message
    assert nameko.web.server.WebServer.process_request.__wrapped__.__module__ == "nameko.web.server"


def test_the_web_server_sends_each_write_at_once():
    seen = {}
    answer = nameko_patches.without_nagle(
        lambda server, sock, address: seen.update(nodelay=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    )
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_connection(listener.getsockname()):
        accepted, address = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # the kernel's default
            answer(None, accepted, address)

    assert seen["nodelay"] != 0  # set before nameko's own method reads the request


def test_another_nameko_version_is_refused(monkeypatch):
    monkeypatch.setattr(nameko_patches, "installed_nameko", lambda: "2.15.0")

    with pytest.raises(nameko_patches.UnsupportedNameko, match=r"written for nameko 2\.14\.1, but nameko 2\.15\.0"):
        nameko_patches.apply()


def test_the_patches_are_written_for_the_pinned_nameko():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [re.fullmatch(r"nameko==(\S+)", dependency) for dependency in dependencies]
    assert [pin.group(1) for pin in pins if pin] == [nameko_patches.WRITTEN_FOR]
    assert nameko_patches.installed_nameko() == nameko_patches.WRITTEN_FOR


def test_importing_the_chassis_patches_nothing():
    code = (
        "import nameko.rpc; from nameko.messaging import QueueConsumer; before = vars(QueueConsumer).copy(); "
        "responder = nameko.rpc.Responder; import chassis.nameko_ext, chassis.nameko_patches; "
        "assert vars(QueueConsumer) == before and nameko.rpc.Responder is responder"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
