"""2,000 concurrent guarded sockets on one real daphne process: every handshake accepted through
the whole stack (Origin guard, sessions, the authentication step with an API token in
``Sec-WebSocket-Protocol``, the live-socket watch), every socket registered, and all of them closed
(4401) by one revocation broadcast: ``manage.py wsguard_token revoke`` in another process, one
control event over Redis. Memory per socket and the handshake rate are in bench/load.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.fault_apps import open_idle, server_close_code
from tests.servers import ROOT

pytestmark = [pytest.mark.daphne, pytest.mark.redis]

SOCKETS = 2000
CONCURRENCY = 50
SETTINGS = "tests.auth_settings"
# One token for every socket: no per-user cap, no per-address limit (all come from 127.0.0.1).
OVERRIDES = {"MAX_SOCKETS_PER_USER": None, "HANDSHAKE_RATE": None}
IDLE_CLIENT_ARGS = ("--ping-interval", "3600", "--ping-timeout", "3600")


def manage(env: dict[str, str], *args: str) -> str:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def hold(port: int, token: str) -> list[tuple[object, object, int]]:
    headers = [("Origin", f"http://127.0.0.1:{port}"), ("Sec-WebSocket-Protocol", f"wsguard, wsguard.bearer.{token}")]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> tuple[object, object, int]:
        async with gate:
            return await open_idle(port, "/g/ws/", headers)

    return list(await asyncio.gather(*(one() for _ in range(SOCKETS))))


async def hold_then_revoke(port: int, token: str, env: dict[str, str]) -> tuple[list[int], list[int | None]]:
    held = await hold(port, token)
    statuses = [status for _, _, status in held]
    try:
        if statuses.count(101) == SOCKETS:
            await asyncio.to_thread(manage, env, "wsguard_token", "revoke", token.split("_")[1])
            codes = await asyncio.gather(*(server_close_code(reader, 60) for reader, _, _ in held))
        else:
            codes = []
    finally:
        for _, writer, _ in held:
            writer.close()  # type: ignore[attr-defined]
    return statuses, list(codes)


def test_two_thousand_guarded_sockets_are_accepted_registered_and_closed_by_one_revocation(
    daphne_factory, migrated_database_url, redis_url
):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": redis_url,
        "WSGUARD_TEST_OVERRIDES": json.dumps(OVERRIDES),
    }
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; get_user_model().objects.create_user('loader')",
    )
    token = manage(env, "wsguard_token", "create", "loader", "--name", "load").strip()
    # The raw idle clients never answer daphne's keepalive pings (by default every 20 s, then 30 s to
    # answer): on a slow machine the first sockets would be dropped before the revocation is sent.
    server = daphne_factory("tests.fault_apps:load_application", args=IDLE_CLIENT_ARGS, **env)

    statuses, codes = asyncio.run(hold_then_revoke(server.port, token, env))

    assert statuses.count(101) == SOCKETS, f"{sorted(set(statuses))}\n{server.log()[-3000:]}"
    assert codes.count(4401) == SOCKETS, f"close codes: { {c: codes.count(c) for c in set(codes)} }"
    log = server.log()
    # One event closed them all: every socket was in this process's registry under the token.
    assert f"closed {SOCKETS} live socket(s): reason=token-revoked close=4401" in log, log[-3000:]
    assert "Traceback" not in log, log[-5000:]
