"""Idle guarded sockets on one daphne process: memory per socket, and the handshake rate of the whole
stack against the same daphne without wsguard, in one run.

    .venv/bin/python bench/load.py [--sockets 2000] [--handshakes 1000] [--rounds 6] [--concurrency 20]
                                   [--redis redis://127.0.0.1:6379/4]

One daphne serves ``tests.fault_apps:load_application``: the same idle echo consumer at ``/g/ws/``
behind ``wsguard.GuardStack`` (authenticated by an API token in ``Sec-WebSocket-Protocol``, which
costs one indexed query per handshake) and at ``/u/ws/`` with no wsguard at all.

* **Rate.** Rounds of ``--handshakes`` handshakes per route, alternating which goes first; the
  figure is the median of the per-round ratios guarded/bare.
* **Memory.** ``--sockets`` idle sockets held open on each route, each in a fresh daphne process
  after a warm-up: the growth of daphne's resident set (``/proc/<pid>/status``) divided
  by the number of sockets, for each route, and the difference (what wsguard adds per socket).

``--redis`` puts the channel layer and cache on that Redis (a database it may flush), as a
several-worker deployment has them; without it, the in-memory layer and local-memory cache.
Prints figures; asserts nothing about time. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import daphne, run_load, warm_up  # noqa: E402
from bench.flood import rss_kib  # noqa: E402
from tests.fault_apps import open_idle  # noqa: E402

NO_KEEPALIVE = ("--ping-interval", "3600", "--ping-timeout", "3600")

SETTINGS = "tests.auth_settings"
APP = "tests.fault_apps:load_application"
OVERRIDES = {"MAX_SOCKETS_PER_USER": None, "HANDSHAKE_RATE": None}


def prepare(directory: Path, redis: str | None) -> tuple[dict[str, str], str]:
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": f"sqlite:///{directory / 'load.sqlite3'}",
        "WSGUARD_TEST_OVERRIDES": json.dumps(OVERRIDES),
        "REDIS_URL": redis or "",
    }
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=full, check=True, capture_output=True, text=True
        ).stdout

    manage("migrate", "--noinput", "-v0")
    manage("shell", "-c", "from django.contrib.auth import get_user_model; get_user_model().objects.create_user('u')")
    return env, manage("wsguard_token", "create", "u", "--name", "bench").strip()


async def hold(port: int, path: str, headers: list[tuple[str, str]], count: int) -> list[tuple[object, object, int]]:
    gate = asyncio.Semaphore(50)

    async def one() -> tuple[object, object, int]:
        async with gate:
            return await open_idle(port, path, headers)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def growth(pid: int, port: int, path: str, headers: list[tuple[str, str]], count: int) -> tuple[int, int]:
    """(KiB of RSS growth while ``count`` idle sockets are held, how many were accepted)."""
    await asyncio.sleep(2.0)
    before = rss_kib(pid)
    held = await hold(port, path, headers, count)
    await asyncio.sleep(3.0)
    after = rss_kib(pid)
    for _, writer, _ in held:
        writer.close()  # type: ignore[attr-defined]
    await asyncio.sleep(2.0)
    return after - before, sum(1 for _, _, status in held if status == 101)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--redis", help="channel layer and cache on this Redis (a database it may flush)")
    args = parser.parse_args()
    if args.redis:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    with tempfile.TemporaryDirectory(prefix="wsguard-load-") as tmp:
        env, token = prepare(Path(tmp), args.redis)
        with daphne(APP, tmp_dir=Path(tmp), **env) as server:
            origin = ("Origin", f"http://127.0.0.1:{server.port}")
            guarded = [origin, ("Sec-WebSocket-Protocol", f"wsguard, wsguard.bearer.{token}")]
            routes = {"wsguard": ("/g/ws/", guarded), "bare": ("/u/ws/", [origin])}
            for path, headers in routes.values():
                result = warm_up(server.port, headers, path=path, count=200)
                assert result.count(101) == 200, result.summary()

            ratios, rates = [], {"wsguard": [], "bare": []}
            for number in range(args.rounds):
                order = ("wsguard", "bare") if number % 2 == 0 else ("bare", "wsguard")
                measured = {}
                for name in order:
                    path, headers = routes[name]
                    measured[name] = run_load(
                        server.port, args.handshakes, args.concurrency, headers=headers, path=path
                    )
                    assert measured[name].count(101) == args.handshakes, measured[name].summary()
                    rates[name].append(measured[name].rate)
                ratios.append(measured["wsguard"].rate / measured["bare"].rate)
                print(
                    f"  round {number + 1}: wsguard {measured['wsguard'].rate:,.0f}/s, "
                    f"bare {measured['bare'].rate:,.0f}/s, ratio {ratios[-1]:.3f}"
                )

            tracebacks = server.log().count("Traceback")
        per_socket = {}
        for name in ("bare", "wsguard"):
            # A fresh process per route: freed memory of one route's sockets would otherwise be
            # reused by the other's and hide its cost.
            # The raw idle clients never answer keepalive pings: keep daphne from dropping them.
            with daphne(APP, tmp_dir=Path(tmp), args=NO_KEEPALIVE, **env) as server:
                origin = ("Origin", f"http://127.0.0.1:{server.port}")
                headers = [origin, ("Sec-WebSocket-Protocol", f"wsguard, wsguard.bearer.{token}")]
                path, headers = ("/g/ws/", headers) if name == "wsguard" else ("/u/ws/", [origin])
                warm_up(server.port, headers, path=path, count=300)
                grown, accepted = asyncio.run(growth(server.process.pid, server.port, path, headers, args.sockets))
                per_socket[name] = grown * 1024 / args.sockets
                tracebacks += server.log().count("Traceback")
                print(f"  {name}: {accepted}/{args.sockets} idle sockets held, RSS +{grown / 1024:.1f} MiB")
    layer = "channels-redis + Redis cache" if args.redis else "in-memory layer + local-memory cache"
    print(
        f"handshakes/s ({layer}, concurrency {args.concurrency}, median of {args.rounds} rounds): "
        f"wsguard GuardStack + API token {statistics.median(rates['wsguard']):,.0f}/s vs the same daphne "
        f"without wsguard {statistics.median(rates['bare']):,.0f}/s = {statistics.median(ratios):.3f}x"
    )
    print(
        f"memory per idle socket ({args.sockets} sockets, daphne RSS growth / N): wsguard "
        f"{per_socket['wsguard'] / 1024:.1f} KiB, without wsguard {per_socket['bare'] / 1024:.1f} KiB, "
        f"wsguard adds {(per_socket['wsguard'] - per_socket['bare']) / 1024:+.1f} KiB; "
        f"tracebacks in the server log: {tracebacks}"
    )


if __name__ == "__main__":
    main()
