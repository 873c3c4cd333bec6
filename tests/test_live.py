"""Live sockets: registration, control events, and re-checks when the policy changes."""

from __future__ import annotations

import asyncio

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from wsguard import live
from wsguard.middleware import GuardStack, guard
from wsguard.policy import build_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


def communicator(
    origin: str = "https://app.example.com", scheme: str = "wss", app: object = None
) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        # Anonymous sockets are refused unless the route opts in (wsguard.guard).
        app or GuardStack(guard(Accepting.as_asgi(), allow_anonymous=True)),
        "/ws/",
        headers=[(b"host", b"localhost"), (b"origin", origin.encode())],
    )
    comm.scope["scheme"] = scheme
    return comm


async def wait_for(predicate, attempts: int = 200) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_accepted_socket_is_registered_until_it_disconnects():
    comm = communicator()
    assert (await comm.connect())[0]
    (socket,) = [s for s in live.registry.all() if s.origin == "https://app.example.com"]
    assert socket.path == "/ws/"
    await comm.disconnect()
    assert socket.id not in live.registry.sockets


async def test_a_control_event_closes_matching_sockets_through_the_channel_layer():
    closed_paths = []

    @live.on_event("test-close-all")
    async def close_everything(event):
        closed_paths.extend(s.path for s in live.registry.all())
        await live.close_all(live.registry.all(), 4401, event["why"])

    comm = communicator()
    assert (await comm.connect())[0]
    await live.publish({"kind": "test-close-all", "why": "test"})
    message = await comm.receive_output(timeout=2)
    assert message == {"type": "websocket.close", "code": 4401, "reason": "test"}
    assert closed_paths == ["/ws/"]
    assert not live.registry.all()
    live._event_handlers["test-close-all"].remove(close_everything)


async def test_policy_change_closes_sockets_whose_origin_is_no_longer_trusted():
    kept, dropped = communicator("https://x.partner.example"), communicator("https://app.example.com")
    assert (await kept.connect())[0] and (await dropped.connect())[0]
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": ["https://*.partner.example"]}):
        assert await live.recheck_origins(build_snapshot()) == 1
    message = await dropped.receive_output(timeout=2)
    assert message["type"] == "websocket.close" and message["code"] == 4403
    assert message["reason"] == "origin-untrusted"
    assert await kept.receive_nothing(timeout=0.1)
    await kept.disconnect()


async def test_closing_twice_sends_one_close():
    comm = communicator()
    assert (await comm.connect())[0]
    (socket,) = live.registry.all()
    assert await socket.close(4401, "revoked")
    assert not await socket.close(4401, "revoked")
    assert (await comm.receive_output(timeout=1))["code"] == 4401
    assert await comm.receive_nothing(timeout=0.1)


@override_settings(WSGUARD={"ALLOWED_ORIGINS": ["http://localhost"]})
async def test_a_recheck_decides_each_connection_scheme_on_its_own():
    # Same Origin, Host and path; over ws the Origin is also same-origin, over wss only the pattern
    # trusts it. Dropping the pattern must close the wss socket and keep the ws one.
    app = GuardStack(guard(Accepting.as_asgi(), allow_anonymous=True))  # one guard for both sockets
    plain, secure = communicator("http://localhost", "ws", app), communicator("http://localhost", "wss", app)
    assert (await plain.connect())[0] and (await secure.connect())[0]
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": []}):
        assert await live.recheck_origins(build_snapshot()) == 1
    assert (await secure.receive_output(timeout=2))["code"] == 4403
    assert await plain.receive_nothing(timeout=0.1)
    await plain.disconnect()
