"""Limits: message size (1009) and rate (4429) per connection, the per-user socket cap and the
per-address handshake rate (4429), the last two in the shared cache so they hold across workers:
proven on a real Redis and across two real daphne processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import websockets.sync.client
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.cache import caches
from django.test import override_settings

from tests.servers import ROOT, Daphne, raw_handshake
from tests.test_auth_daphne import APP, SETTINGS, create_users, manage
from wsguard import GuardStack, guard, limits
from wsguard.testing import communicator

pytestmark = pytest.mark.django_db(transaction=True)


class Echo(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


app = GuardStack(guard(Echo.as_asgi(), allow_anonymous=True))


def limited(**keys):
    return override_settings(WSGUARD={"ALLOWED_ORIGINS": [], **keys})


@pytest.fixture
def redis_cache(redis_url):
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    ):
        caches["default"].clear()
        yield caches["default"]


async def test_a_message_over_max_message_bytes_closes_with_1009():
    with limited(MAX_MESSAGE_BYTES=10):
        comm = await communicator(app, "/ws/")
        assert (await comm.connect())[0]
        await comm.send_to(text_data="x" * 10)
        assert await comm.receive_from() == "x" * 10
        await comm.send_to(bytes_data=b"y" * 11)
        closed = await comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1009, "reason": "message-too-big"}


async def test_the_size_is_counted_in_utf8_bytes():
    with limited(MAX_MESSAGE_BYTES=12):
        comm = await communicator(app, "/ws/")
        assert (await comm.connect())[0]
        await comm.send_to(text_data="é" * 6)  # 12 bytes
        assert await comm.receive_from() == "é" * 6
        await comm.send_to(text_data="€" * 5)  # 15 bytes, 5 characters
        assert (await comm.receive_output(timeout=5))["code"] == 1009


async def test_the_message_rate_closes_with_4429():
    with limited(MESSAGE_RATE="3/minute"):
        comm = await communicator(app, "/ws/")
        assert (await comm.connect())[0]
        for n in range(3):
            await comm.send_to(text_data=str(n))
            assert await comm.receive_from() == str(n)
        await comm.send_to(text_data="one too many")
        closed = await comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4429, "reason": "message-rate"}


async def test_the_handshake_rate_per_client_address(caplog):
    with limited(HANDSHAKE_RATE="2/minute"):
        for _ in range(2):
            comm = await communicator(app, "/ws/", client=("198.51.100.7", 5000))
            assert (await comm.connect())[0]
            await comm.disconnect()
        comm = await communicator(app, "/ws/", client=("198.51.100.7", 5001))
        assert await comm.connect() == (False, 4429)
        other = await communicator(app, "/ws/", client=("198.51.100.8", 5000))
        assert (await other.connect())[0]
        await other.disconnect()
    assert "reason=rate-limited" in caplog.text


async def test_the_per_user_socket_cap_and_its_release(alice, caplog):
    with limited(MAX_SOCKETS_PER_USER=2):
        first = await communicator(app, "/ws/", user=alice)
        second = await communicator(app, "/ws/", user=alice, via="token")
        assert (await first.connect())[0] and (await second.connect())[0]
        third = await communicator(app, "/ws/", user=alice, via="ticket")
        assert await third.connect() == (False, 4429)
        await first.disconnect()
        fourth = await communicator(app, "/ws/", user=alice)
        assert (await fourth.connect())[0]
        await second.disconnect()
        await fourth.disconnect()
    assert "reason=too-many-sockets" in caplog.text


@pytest.mark.redis
def test_counters_and_slots_are_shared_through_redis(redis_cache):
    with limited(HANDSHAKE_RATE="3/day"):
        window = int(time.time() // 86400)
        assert [limits.handshake_allowed("203.0.113.9") for _ in range(4)] == [True, True, True, False]
        # Another process sees the same counter: it lives in Redis, not in this process.
        assert redis_cache.get(f"{limits.RATE_PREFIX}handshake:203.0.113.9:{window}") == 4
    one, two = limits.SocketSlots(), limits.SocketSlots()  # two workers' slot tables
    taken = [one.acquire("42", 3), two.acquire("42", 3), two.acquire("42", 3)]
    assert all(taken) and len(set(taken)) == 3
    assert one.acquire("42", 3) is None and two.acquire("42", 3) is None
    two.release(taken[1])
    assert one.acquire("42", 3) == taken[1]
    assert one.renew(force=True) == 2


@pytest.mark.daphne
@pytest.mark.redis
def test_limits_hold_across_two_daphne_workers(tmp_path, redis_url):
    overrides = {"ALLOWED_ORIGINS": ["http://127.0.0.1:*"], "HANDSHAKE_RATE": "6/day", "MAX_SOCKETS_PER_USER": 2}
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        "REDIS_URL": redis_url,
        "WSGUARD_TEST_OVERRIDES": json.dumps(overrides),
    }
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=full, check=True, timeout=120)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    create_users(env, "carol")
    token = manage(env, "wsguard_token", "create", "carol").strip()
    a, b = (Daphne(app=APP, env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS}).start(tmp_path) for _ in range(2))
    try:
        origin = f"http://127.0.0.1:{a.port}"
        protocols = ["wsguard", f"wsguard.bearer.{token}"]
        # Two sockets for carol, one on each worker: the third is refused on either.
        with websockets.sync.client.connect(f"ws://{a.base}/ws/echo/", origin=origin, subprotocols=protocols):
            with websockets.sync.client.connect(f"ws://{b.base}/ws/echo/", origin=origin, subprotocols=protocols):
                header = [("Origin", origin), ("Sec-WebSocket-Protocol", ", ".join(protocols))]
                assert raw_handshake(a.port, headers=header)[0] == 403
                assert "reason=too-many-sockets" in a.log()
        # Three handshakes from 127.0.0.1 so far, on both workers: three more of the six a day, then 4429.
        statuses = [raw_handshake((a, b)[n % 2].port, headers=[("Origin", origin)])[0] for n in range(4)]
        assert statuses == [101, 101, 101, 403]
        assert "reason=rate-limited" in a.log() + b.log()
    finally:
        a.stop()
        b.stop()
