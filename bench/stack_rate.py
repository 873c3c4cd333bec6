"""The whole wsguard stack (Origin guard + session authentication) against Channels'
``AllowedHostsOriginValidator(AuthMiddlewareStack(...))``: handshakes per second on one daphne
process in one run, database queries per handshake, and memory per idle socket.

    .venv/bin/python bench/stack_rate.py [--handshakes 1500] [--rounds 8] [--concurrency 20]
                                         [--idle 1000] [--redis redis://127.0.0.1:6379/2]

* **Rate.** One daphne process serves both stacks around the same echo consumer, ``/g/...`` through
  ``wsguard.GuardStack`` and ``/c/...`` through Channels' pair. Every handshake carries the same
  same-origin ``Origin`` and the session cookie of a logged-in user, so both stacks load the session
  and the user and accept. Rounds alternate which stack goes first; the figure is the median of the
  per-round ratios (target: at least 0.95). ``HANDSHAKE_RATE`` is set so high that the per-address
  counter is kept (its cache write is paid) but never refuses. ``--redis`` puts the cache (and the
  channel layer) on Redis, as a several-worker deployment has it; without it, local memory.
* **Queries.** In-process, through ``WebsocketCommunicator``: queries per accepted handshake for a
  session (database and cached sessions), a ticket and a token, and for Channels' stack.
* **Memory.** Two daphne processes, one per stack, each holding ``--idle`` open idle sockets: the
  growth of their resident set per socket; and, in-process, ``tracemalloc``'s count of what one
  idle guarded socket keeps beyond Channels' stack.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 0.95
SETTINGS = "tests.auth_settings"
BENCH_OVERRIDES = {"HANDSHAKE_RATE": "100000000/minute", "MAX_SOCKETS_PER_USER": None, "ALLOWED_ORIGINS": []}


def _build_application() -> Any:
    """``bench.stack_rate:application`` for daphne: both stacks, dispatched on the path prefix."""
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
    from channels.auth import AuthMiddlewareStack
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    from wsguard import GuardStack

    class Echo(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            if self.scope["user"].is_authenticated:
                await self.accept()
            else:
                await self.close()

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self.send(text_data=text_data)

    guarded = GuardStack(Echo.as_asgi())
    baseline = AllowedHostsOriginValidator(AuthMiddlewareStack(Echo.as_asgi()))

    async def websocket(scope: dict, receive: Any, send: Any) -> None:
        app = guarded if scope.get("path", "").startswith("/g/") else baseline
        await app(scope, receive, send)

    return ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket})


def __getattr__(name: str) -> Any:
    if name == "application":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
        app = _build_application()
        globals()["application"] = app
        return app
    raise AttributeError(name)


# --- set-up --------------------------------------------------------------------------------------


def _env(db_url: str, redis: str | None) -> dict[str, str]:
    env = {
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "WSGUARD_TEST_OVERRIDES": json.dumps(BENCH_OVERRIDES),
        "PYTHONPATH": str(ROOT),
    }
    if redis:
        env["REDIS_URL"] = redis
    return env


def prepare_database(directory: Path, redis: str | None) -> tuple[dict[str, str], str]:
    """A migrated SQLite file with one user and a logged-in session; the env and the session key."""
    env = _env(f"sqlite:///{directory / 'bench.sqlite3'}", redis)
    full = {**os.environ, **env}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=full, check=True)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from wsguard.testing import login_session\n"
        "u = get_user_model().objects.create_user('bench', password='pw-bench-123')\n"
        "print(login_session(u, 'django.contrib.auth.backends.ModelBackend').session_key)\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=full,
        check=True,
        capture_output=True,
        text=True,
    )
    return env, done.stdout.strip().splitlines()[-1]


# --- rate ----------------------------------------------------------------------------------------


def measure_rate(args: argparse.Namespace, env: dict[str, str], session_key: str) -> None:
    from bench.common import daphne, run_load, warm_up

    with daphne("bench.stack_rate:application", **env) as server:
        origin = f"http://127.0.0.1:{server.port}"
        headers = [("Origin", origin), ("Cookie", f"sessionid={session_key}")]
        for prefix in ("/g/", "/c/"):
            result = warm_up(server.port, headers, path=prefix + "echo/", count=100)
            assert result.count(101) == 100, f"{prefix}: {result.summary()}\n{server.log()[-2000:]}"
        ratios, guarded_rates, baseline_rates = [], [], []
        for round_number in range(args.rounds):
            order = ("/g/", "/c/") if round_number % 2 == 0 else ("/c/", "/g/")
            results = {}
            for prefix in order:
                results[prefix] = run_load(
                    server.port, args.handshakes, args.concurrency, headers=headers, path=prefix + "echo/"
                )
                assert results[prefix].count(101) == args.handshakes, results[prefix].summary()
            guarded, baseline = results["/g/"], results["/c/"]
            ratios.append(guarded.rate / baseline.rate)
            guarded_rates.append(guarded.rate)
            baseline_rates.append(baseline.rate)
            print(
                f"  round {round_number + 1}: wsguard {guarded.rate:,.0f}/s, Channels {baseline.rate:,.0f}/s, "
                f"ratio {ratios[-1]:.3f}"
            )
        ratio = statistics.median(ratios)
        print(
            f"handshakes/s, session cookie + same-origin Origin, cache={'redis' if 'REDIS_URL' in env else 'locmem'}: "
            f"wsguard GuardStack {statistics.median(guarded_rates):,.0f}/s vs Channels "
            f"AllowedHostsOriginValidator(AuthMiddlewareStack) {statistics.median(baseline_rates):,.0f}/s "
            f"= {ratio:.3f}x (median of {args.rounds} rounds; target >= {TARGET}: "
            f"{'met' if ratio >= TARGET else 'NOT met'})"
        )


# --- queries -------------------------------------------------------------------------------------


def measure_queries() -> None:
    """In-process, against an in-memory test database (the same settings as the test suite)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()
    from django.db import connection

    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        asyncio.run(_count_queries())
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


async def _count_queries() -> None:
    from channels.auth import AuthMiddlewareStack
    from channels.db import database_sync_to_async
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.security.websocket import AllowedHostsOriginValidator
    from django.contrib.auth import get_user_model
    from django.test import override_settings
    from django.utils import timezone

    from wsguard import GuardStack
    from wsguard.live import listener
    from wsguard.models import ApiToken
    from wsguard.testing import build_communicator

    class Accept(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()

    user = await database_sync_to_async(get_user_model().objects.create_user)("q", password="pw-q-123")
    stacks = {
        "wsguard": GuardStack(Accept.as_asgi()),
        "channels": AllowedHostsOriginValidator(AuthMiddlewareStack(Accept.as_asgi())),
    }

    from django.db.backends import utils

    executed: list[str] = []
    original = utils.CursorWrapper._execute_with_wrappers

    def counting(self: Any, sql: str, *rest: Any, **kwargs: Any) -> Any:
        # Every query on every thread's connection (the stacks run theirs in a database thread).
        executed.append(sql)
        return original(self, sql, *rest, **kwargs)

    utils.CursorWrapper._execute_with_wrappers = counting

    async def count(stack: str, via: str, warm: bool = True) -> int:
        if warm:  # the first handshake of a process builds caches; measure a later one
            await count(stack, via, warm=False)
        comm = await database_sync_to_async(build_communicator)(stacks[stack], "/ws/", user=user, via=via)
        if via == "token":  # a token used within the last minute: no last_used_at write
            await database_sync_to_async(ApiToken.objects.update)(last_used_at=timezone.now())
        executed.clear()
        connected, _ = await comm.connect()
        queries = len(executed)
        assert connected
        await comm.disconnect()
        return queries

    print("database queries per accepted handshake (in-process, after a warm-up handshake):")
    print(f"  wsguard, session (db sessions):          {await count('wsguard', 'session')}   (session row + user row)")
    print(f"  Channels' stack, session (db sessions):  {await count('channels', 'session')}")
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache"):
        print(f"  wsguard, session (cache sessions):       {await count('wsguard', 'session')}   (user row)")
        print(f"  Channels' stack, session (cache sessions): {await count('channels', 'session')}")
    print(
        f"  wsguard, ticket:                         {await count('wsguard', 'ticket')}   (user row; ticket in cache)"
    )
    print(
        f"  wsguard, token:                          {await count('wsguard', 'token')}   "
        f"(token + user in one query; +1 UPDATE of last_used_at at most once a minute)"
    )
    await listener.stop()


# --- memory --------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _hold_idle(port: int, path: str, headers: list[tuple[str, str]], count: int) -> list[Any]:
    from bench.common import parse_status, upgrade_request

    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port, path, headers, None))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert parse_status(head) == 101, head
        held.append((reader, writer))
    return held


async def _idle_growth(pid: int, port: int, path: str, headers: list[tuple[str, str]], count: int) -> int:
    """KiB the server's resident set grows by while it holds ``count`` idle sockets."""
    await asyncio.sleep(1.0)
    before = _rss_kib(pid)
    held = await _hold_idle(port, path, headers, count)
    await asyncio.sleep(2.0)
    after = _rss_kib(pid)
    for _, writer in held:
        writer.close()
    return after - before


def measure_memory(args: argparse.Namespace, env: dict[str, str], session_key: str) -> None:
    from bench.common import daphne, warm_up

    per_socket = {}
    for name, prefix in (("wsguard", "/g/"), ("channels", "/c/")):
        with daphne("bench.stack_rate:application", **env) as server:
            headers = [("Origin", f"http://127.0.0.1:{server.port}"), ("Cookie", f"sessionid={session_key}")]
            warm_up(server.port, headers, path=prefix + "echo/", count=200)
            grown = asyncio.run(_idle_growth(server.process.pid, server.port, prefix + "echo/", headers, args.idle))
            per_socket[name] = grown * 1024 / args.idle
    print(
        f"memory per idle socket (daphne RSS growth over {args.idle} idle sockets, session-authenticated): "
        f"wsguard {per_socket['wsguard'] / 1024:.1f} KiB, Channels' stack {per_socket['channels'] / 1024:.1f} KiB, "
        f"difference {(per_socket['wsguard'] - per_socket['channels']) / 1024:+.1f} KiB"
    )


def measure_tracemalloc(args: argparse.Namespace) -> None:
    """What wsguard itself keeps per idle socket: its LiveSocket record, index entries and closures."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import tracemalloc

    import django

    django.setup()
    from wsguard import live

    sockets = max(100, min(args.idle, 5000))

    async def send(message: dict) -> None:
        return None

    async def run() -> float:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        made = []
        for n in range(sockets):
            socket = live.LiveSocket(
                path="/ws/chat/lobby/",
                client="127.0.0.1",
                origin="https://app.example.com",
                send=send,
                user_id=str(n),
                session_key=f"{n:040x}",
                credential="session",
                expires_at=1e10,
                revalidate=lambda: None,
            )
            live.registry.add(socket)
            made.append(socket)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        for socket in made:
            live.registry.discard(socket)
        return size / sockets

    print(
        f"wsguard's own record per live socket (tracemalloc, {sockets} sockets, each its own user and session): "
        f"{asyncio.run(run()):.0f} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--redis", help="put the cache and channel layer on this Redis (a db you may flush)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["rate", "queries", "memory"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsguard-stack-bench-") as tmp:
        env, session_key = prepare_database(Path(tmp), args.redis)
        if "rate" not in args.skip:
            measure_rate(args, env, session_key)
        if "memory" not in args.skip:
            measure_memory(args, env, session_key)
    if "queries" not in args.skip:
        with contextlib.suppress(KeyboardInterrupt):
            measure_queries()
    if "memory" not in args.skip:
        measure_tracemalloc(args)


if __name__ == "__main__":
    main()
