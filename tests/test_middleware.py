"""The Origin guard through Channels' WebsocketCommunicator, with real header lists."""

from __future__ import annotations

import logging

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from wsguard.middleware import GuardStack, OriginGuard
from wsguard.rejections import CLOSE_ORIGIN
from wsguard.signals import handshake_rejected

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder(AsyncWebsocketConsumer):
    """Accepts and reports which wsguard facts reached it."""

    async def connect(self) -> None:
        await self.accept()
        info = self.scope.get("wsguard") or {}
        cookies = [v for k, v in self.scope["headers"] if k == b"cookie"]
        await self.send(text_data=f"{info.get('origin')}|{info.get('trusted_by')}|{len(cookies)}")


def headers(*pairs: tuple[str, str | bytes], host: str | None = "app.example.com") -> list[tuple[bytes, bytes]]:
    out = [] if host is None else [(b"host", host.encode())]
    for name, value in pairs:
        out.append((name.encode(), value if isinstance(value, bytes) else value.encode()))
    return out


async def connect(app, hdrs, path="/ws/", scheme="wss"):
    communicator = WebsocketCommunicator(app, path, headers=hdrs)
    communicator.scope["scheme"] = scheme
    connected, code = await communicator.connect()
    text = await communicator.receive_from() if connected else None
    await communicator.disconnect()
    return connected, code, text


async def test_trusted_pattern_is_accepted_and_recorded_in_scope():
    ok, _, text = await connect(OriginGuard(Recorder.as_asgi()), headers(("origin", "https://app.example.com")))
    assert ok
    assert text == "https://app.example.com|settings|0"


@pytest.mark.parametrize(
    "origin_headers, reason",
    [
        ([], "origin-missing"),
        ([("origin", "https://evil.example")], "origin-untrusted"),
        ([("origin", "null")], "origin-opaque"),
        ([("origin", "https://app.example.com/")], "origin-malformed"),
        ([("origin", "https://app.example.com"), ("origin", "https://app.example.com")], "origin-malformed"),
        ([("origin", "https://app.example.com, https://evil.example")], "origin-malformed"),
        ([("origin", b"https://app.example.com\x00")], "origin-malformed"),
        ([("origin", "https://app.example.com.evil.example")], "origin-untrusted"),
        ([("origin", "http://app.example.com")], "origin-untrusted"),
        ([("origin", "https://partner.example")], "origin-untrusted"),
    ],
)
async def test_untrusted_origins_are_denied_with_reason(origin_headers, reason, caplog):
    caplog.set_level(logging.WARNING, logger="wsguard")
    ok, code, _ = await connect(OriginGuard(Recorder.as_asgi()), headers(*origin_headers))
    assert not ok
    assert code == CLOSE_ORIGIN
    assert [r.wsguard_reason for r in caplog.records if r.name == "wsguard"] == [reason]


async def test_wildcard_subdomain_is_trusted_at_any_depth():
    app = OriginGuard(Recorder.as_asgi())
    assert (await connect(app, headers(("origin", "https://a.b.partner.example"))))[0]


async def test_host_not_in_allowed_hosts_is_denied_even_for_same_origin(caplog):
    caplog.set_level(logging.WARNING, logger="wsguard")
    ok, code, _ = await connect(
        OriginGuard(Recorder.as_asgi()), headers(("origin", "https://rebind.attacker"), host="rebind.attacker")
    )
    assert (ok, code) == (False, CLOSE_ORIGIN)
    assert caplog.records[-1].wsguard_reason == "host-untrusted"


async def test_same_origin_follows_the_connection_scheme():
    app = OriginGuard(Recorder.as_asgi(), allowed_origins=[])
    hdrs = headers(("origin", "http://localhost:8000"), host="localhost:8000")
    assert (await connect(app, hdrs, scheme="ws"))[0]
    assert not (await connect(app, hdrs, scheme="wss"))[0]


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
async def test_same_origin_honours_secure_proxy_ssl_header():
    app = OriginGuard(Recorder.as_asgi(), allowed_origins=[])
    hdrs = headers(("origin", "https://localhost"), ("x-forwarded-proto", "https"), host="localhost")
    assert (await connect(app, hdrs, scheme="ws"))[0]


async def test_same_origin_can_be_switched_off():
    app = OriginGuard(Recorder.as_asgi(), allowed_origins=[], same_origin=False)
    hdrs = headers(("origin", "http://localhost"), host="localhost")
    assert not (await connect(app, hdrs, scheme="ws"))[0]


@override_settings(WSGUARD={"REPORT_ONLY": True})
async def test_report_only_logs_and_lets_in(caplog):
    caplog.set_level(logging.WARNING, logger="wsguard")
    ok, _, _ = await connect(OriginGuard(Recorder.as_asgi()), headers(("origin", "https://evil.example")))
    assert ok
    assert "would deny" in caplog.records[-1].getMessage()


@override_settings(WSGUARD={"MISSING_ORIGIN": "token"})
async def test_missing_origin_token_mode_strips_cookies():
    app = OriginGuard(Recorder.as_asgi())
    ok, _, text = await connect(app, headers(("cookie", "sessionid=abc")))
    assert ok
    assert text.endswith("|missing-origin:token|0")


async def test_rejected_signal_carries_the_facts_but_no_secrets():
    seen = []

    def receiver(sender, rejection, **kwargs):
        seen.append(rejection)

    handshake_rejected.connect(receiver)
    try:
        app = OriginGuard(Recorder.as_asgi())
        hdrs = headers(("origin", "https://evil.example"), ("cookie", "sessionid=supersecret"))
        communicator = WebsocketCommunicator(app, "/ws/room/?ticket=supersecret", headers=hdrs)
        assert not (await communicator.connect())[0]
    finally:
        handshake_rejected.disconnect(receiver)
    (rejection,) = seen
    assert (rejection.reason, rejection.path, rejection.origin) == ("origin-untrusted", "/ws/room/", "https://evil.example")
    assert "supersecret" not in repr(rejection)


async def test_other_scope_types_pass_through():
    calls = []

    async def inner(scope, receive, send):
        calls.append(scope["type"])

    await OriginGuard(inner)({"type": "http", "headers": []}, None, None)
    assert calls == ["http"]


async def test_guard_stack_puts_the_guard_outermost():
    stack = GuardStack(Recorder.as_asgi())
    assert isinstance(stack, OriginGuard)
    assert not (await connect(stack, headers(("origin", "https://evil.example"))))[0]
