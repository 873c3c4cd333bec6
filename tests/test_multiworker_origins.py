"""The several-worker story, for real: two daphne processes sharing one Redis (channels_redis for
broadcasts, Django's RedisCache for the version key) and one database. A change made from a third
process (``manage.py wsguard_origins``, as a deploy script would) or written behind the model's
back reaches both; revocation closes open sockets on the other process with 4403."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.servers import ROOT, Daphne, raw_handshake

pytestmark = [pytest.mark.daphne, pytest.mark.redis]
APP = "tests.origin_app:guarded"
DEADLINE = 20.0  # generous on a shared machine; the measured time is printed


@pytest.fixture
def cluster(daphne_factory, migrated_database_url, redis_url):
    env = {"DATABASE_URL": migrated_database_url, "REDIS_URL": redis_url}
    workers = (daphne_factory(APP, **env), daphne_factory(APP, **env))
    return workers, env


def manage(env: dict[str, str], *args: str) -> str:
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "manage.py", "wsguard_origins", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def status(worker: Daphne, origin: str, path: str = "/ws/echo/") -> int:
    return raw_handshake(worker.port, path, headers=[("Origin", origin)])[0]


def wait_status(workers: tuple[Daphne, ...], origin: str, expected: int) -> float:
    started = time.monotonic()
    pending = list(workers)
    while pending and time.monotonic() - started < DEADLINE:
        pending = [w for w in pending if status(w, origin) != expected]
        if pending:
            time.sleep(0.05)
    assert not pending, f"{origin} not {expected} on port(s) {[w.port for w in pending]}:\n{pending[0].log()[-3000:]}"
    return time.monotonic() - started


@pytest.fixture
def stack():
    with contextlib.ExitStack() as sockets:
        yield sockets


def open_socket(stack: contextlib.ExitStack, worker: Daphne, origin: str) -> ClientConnection:
    ws = stack.enter_context(connect(f"ws://127.0.0.1:{worker.port}/ws/echo/", origin=origin, open_timeout=10))
    ws.send("ping")
    assert ws.recv(timeout=10) == "ping"
    return ws


def close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=DEADLINE)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        return None


def fresh_origin() -> str:
    return f"https://p{uuid.uuid4().hex[:10]}.example"


def test_trusted_on_one_side_accepted_on_the_other_and_revocation_closes_live_sockets(cluster, stack):
    (a, b), env = cluster
    origin = fresh_origin()
    assert status(a, origin) == 403 and status(b, origin) == 403

    manage(env, "add", origin, "--note", "multi-worker test")
    took = wait_status((a, b), origin, 101)
    print(f"\ntrust in force on both workers after {took:.2f}s")

    on_b, on_a = open_socket(stack, b, origin), open_socket(stack, a, origin)
    other = open_socket(stack, b, "https://app.example.com")  # trusted by settings: must stay open

    manage(env, "disable", origin)
    took = wait_status((a, b), origin, 403)
    print(f"revocation in force on both workers after {took:.2f}s")
    assert close_code(on_b) == 4403
    assert close_code(on_a) == 4403
    other.send("still here")
    assert other.recv(timeout=10) == "still here"


def test_a_change_without_broadcast_is_found_by_polling_the_version_key(cluster, redis_url):
    (a, b), env = cluster
    origin = fresh_origin()
    # Each worker loads the rows on its first handshake: have both loaded before the write.
    assert status(a, origin) == 403 and status(b, origin) == 403
    # Written behind the model's back (no signal, no broadcast), then only the version key bumped:
    # every worker must notice by polling the shared cache.
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as db:
        db.execute(
            "INSERT INTO wsguard_trustedorigin (origin, is_active, path_prefix, note, created_at, updated_at) "
            "VALUES (?, 1, '', '', datetime('now'), datetime('now'))",
            (origin,),
        )
    assert status(a, origin) == 403  # not yet: nothing told the workers
    from django.core.cache.backends.redis import RedisCache

    from wsguard.sync import VERSION_KEY

    RedisCache(redis_url, {}).set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    took = wait_status((a, b), origin, 101)
    print(f"\npolled change in force on both workers after {took:.2f}s")


def test_expiry_closes_sockets_on_every_worker_without_any_write(cluster, stack):
    (a, b), env = cluster
    origin = fresh_origin()
    manage(env, "add", origin, "--expires", "4s")
    wait_status((a, b), origin, 101)
    sockets = [open_socket(stack, a, origin), open_socket(stack, b, origin)]
    assert [close_code(ws) for ws in sockets] == [4403, 4403]
    assert status(a, origin) == 403 and status(b, origin) == 403


def test_deleting_a_row_revokes_it_everywhere(cluster, stack):
    (a, b), env = cluster
    origin = fresh_origin()
    manage(env, "add", origin, "--path", "/ws/echo/")
    wait_status((a, b), origin, 101)
    assert raw_handshake(a.port, "/ws/chat/", headers=[("Origin", origin)])[0] == 403  # out of scope
    ws = open_socket(stack, b, origin)
    manage(env, "remove", origin)
    wait_status((a, b), origin, 403)
    assert close_code(ws) == 4403
