"""The guard under a real daphne process, answering raw handshakes from a real client."""

from __future__ import annotations

import pytest
import websockets.sync.client

from tests.servers import raw_handshake

pytestmark = pytest.mark.daphne


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import Daphne

    daphne = Daphne().start(tmp_path_factory.mktemp("daphne"))
    yield daphne
    daphne.stop()


def test_trusted_origin_is_upgraded(server):
    status, _ = raw_handshake(server.port, headers=[("Origin", "https://app.example.com")])
    assert status == 101


def test_same_origin_is_upgraded_and_the_consumer_answers(server):
    origin = f"http://127.0.0.1:{server.port}"
    with websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}/ws/echo/", origin=origin) as ws:
        assert '"type": "hello"' in ws.recv(timeout=5)


# 403 is wsguard's answer. Autobahn (inside daphne) refuses some Origins that it cannot parse
# with 400 before any application runs; those rows say so. Either way nothing is upgraded.
@pytest.mark.parametrize(
    "extra, host, expected",
    [
        ([("Origin", "https://evil.example")], None, 403),
        ([], None, 403),
        ([("Origin", "null")], None, 403),
        ([("Origin", "https://app.example.com"), ("Origin", "https://app.example.com")], None, 403),
        ([("Origin", "https://app.example.com/path")], None, 403),
        ([("Origin", b"https://app.example.com\xff")], None, 403),
        ([("Origin", "https://app.example.com:99999")], None, 400),
        ([("Origin", "https://app.example.com.evil.example")], None, 403),
        ([("Origin", "http://evil.example")], "evil.example", 403),
        ([("Origin", "https://" + "a" * 5000 + ".example.com")], None, 403),
        ([("Origin", "x" * 10000)], None, 400),
    ],
)
def test_everything_else_is_refused(server, extra, host, expected):
    status, _ = raw_handshake(server.port, headers=extra, host=host)
    assert status == expected


def test_no_traceback_in_the_server_log(server):
    for origin in ("\x7f", "https://[::1", "https://a:b:c", "ftp://x", "https://xn--", ""):
        raw_handshake(server.port, headers=[("Origin", origin)])
    raw_handshake(server.port, headers=[("Origin", "https://app.example.com")])
    log = server.log()
    assert "Traceback" not in log
    assert "reason=origin-untrusted" in log
    assert "reason=origin-malformed" in log
