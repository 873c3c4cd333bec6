"""A flood of rejected handshakes against one real daphne running the full stack: how many accepted
handshakes per second it still completes during the flood, against the same server unloaded in the
same run, and what the flood does to its memory.

    .venv/bin/python bench/flood.py [--total 20000] [--concurrency 20] [--accepted-concurrency 5]

* **Server.** ``demo_project.asgi:application`` (``wsguard.GuardStack`` around the demo's routes)
  under ``tests.auth_settings``, on a migrated SQLite file, rejection audit and rate-limited log on
  (as deployed), ``HANDSHAKE_RATE`` lifted so that the per-address limit does not refuse the
  measuring client (everything comes from 127.0.0.1).
* **Flood.** ``--total`` rejected handshakes spread over the ten keys of :data:`FLOOD_KEYS`
  (untrusted, missing and opaque Origins, an untrusted Host, two paths), sent by a separate
  process so that the measuring client does not share its event loop.
* **Rate.** Accepted handshakes (trusted Origin, anonymous echo route) per second with
  ``--accepted-concurrency`` in flight: first on the idle server, then while the flood runs; the
  ratio is printed against the target (at least 0.5).
* **Memory.** The daphne process's resident set (``/proc/<pid>/status``) after a warm-up (the
  baseline), its peak sampled every 50 ms during the flood, and after the flood once the audit has
  been flushed; and the same after a second flood of the same size, which shows whether anything
  grows per handshake.

Prints figures; asserts nothing about time. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Header, LoadResult, daphne, handshake_load, run_load, warm_up  # noqa: E402

SETTINGS = "tests.auth_settings"
APP = "demo_project.asgi:application"
HOST = "app.example.com"
TRUSTED = "https://app.example.com"
TARGET = 0.5


@dataclass(frozen=True)
class FloodKey:
    """One kind of rejected handshake, and the audit row it is counted under."""

    path: str
    origin: str | None
    host: str
    reason: str

    @property
    def headers(self) -> list[Header]:
        return [] if self.origin is None else [("Origin", self.origin)]

    @property
    def audit_key(self) -> tuple[str, str, str]:
        return (self.origin or "", self.reason, self.path)


FLOOD_KEYS: tuple[FloodKey, ...] = (
    *(FloodKey("/ws/echo/", f"https://evil{k}.example", HOST, "origin-untrusted") for k in range(6)),
    FloodKey("/ws/chat/lobby/", "https://evil0.example", HOST, "origin-untrusted"),
    FloodKey("/ws/echo/", None, HOST, "origin-missing"),
    FloodKey("/ws/echo/", "null", HOST, "origin-opaque"),
    FloodKey("/ws/echo/", TRUSTED, "evil.example", "host-untrusted"),
)


async def flood(port: int, total: int, concurrency: int) -> LoadResult:
    """``total`` rejected handshakes shared out over the keys of :data:`FLOOD_KEYS` (the first
    ``total % 10`` keys get one more), about ``concurrency`` in flight."""
    keys = len(FLOOD_KEYS)
    per_key = max(1, concurrency // keys)
    started = time.perf_counter()
    parts = await asyncio.gather(
        *(
            handshake_load(
                port, total // keys + (n < total % keys), per_key, path=key.path, headers=key.headers, host=key.host
            )
            for n, key in enumerate(FLOOD_KEYS)
        )
    )
    merged = LoadResult(total=total, concurrency=per_key * len(FLOOD_KEYS), elapsed=time.perf_counter() - started)
    for part in parts:
        merged.statuses.update(part.statuses)
        merged.errors.update(part.errors)
    return merged


def accepted_headers() -> list[Header]:
    return [("Origin", TRUSTED)]


async def accept_until(port: int, done: threading.Event | asyncio.Event, concurrency: int) -> LoadResult:
    """Accepted handshakes on the echo route, ``concurrency`` in flight, until ``done`` is set."""
    result = LoadResult(total=0, concurrency=concurrency, elapsed=0.0)
    started = time.perf_counter()

    async def worker() -> None:
        while not done.is_set():
            one = await handshake_load(port, 1, 1, headers=accepted_headers(), host=HOST)
            result.statuses.update(one.statuses)
            result.errors.update(one.errors)
            result.total += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def paced_flood(port: int, total: int, concurrency: int, rate: float) -> LoadResult:
    """:func:`flood` offered at about ``rate`` handshakes per second: one tenth of a second's worth
    at a time, the next slice started when its time comes (or at once if the server fell behind)."""
    merged = LoadResult(total=total, concurrency=concurrency, elapsed=0.0)
    started = time.perf_counter()
    sent, slice_size = 0, max(1, round(rate / 10))
    while sent < total:
        part = await flood(port, min(slice_size, total - sent), concurrency)
        merged.statuses.update(part.statuses)
        merged.errors.update(part.errors)
        sent += part.total
        ahead = started + sent / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    merged.elapsed = time.perf_counter() - started
    return merged


def _flood_process(port: int, total: int, concurrency: int, rate: float | None, out: multiprocessing.Queue) -> None:
    if rate:
        result = asyncio.run(paced_flood(port, total, concurrency, rate))
    else:
        result = asyncio.run(flood(port, total, concurrency))
    out.put((dict(result.statuses), dict(result.errors), result.elapsed))


def prepare(directory: Path) -> dict[str, str]:
    overrides = {"HANDSHAKE_RATE": "100000000/minute", "AUDIT_FLUSH_SECONDS": 1.0}
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'flood.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "WSGUARD_TEST_OVERRIDES": json.dumps(overrides),
        "REDIS_URL": "",
    }
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=full, check=True)
    return env


def one_flood(
    port: int, pid: int, args: argparse.Namespace, rate: float | None = None
) -> tuple[LoadResult, LoadResult, int]:
    """Run a flood (as fast as it goes, or offered at ``rate`` per second) in another process while
    measuring accepted handshakes here; returns the flood's result, the accepted result during it,
    and the peak RSS (KiB) seen."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=_flood_process, args=(port, args.total, args.concurrency, rate, out))
    done = threading.Event()
    peak = rss_kib(pid)

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    process.start()
    # Give the flood a moment to fill its pipeline before the measurement starts.
    time.sleep(0.5)

    def watch() -> None:
        process.join()
        done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    during = asyncio.run(accept_until(port, done, args.accepted_concurrency))
    watcher.join()
    sampler.join()
    statuses, errors, elapsed = out.get(timeout=30)
    flooded = LoadResult(total=args.total, concurrency=args.concurrency, elapsed=elapsed)
    flooded.statuses.update(statuses)
    flooded.errors.update(errors)
    return flooded, during, peak


def settle(pid: int, seconds: float) -> int:
    """RSS (KiB) after ``seconds`` of quiet (the audit flushes every second)."""
    time.sleep(seconds)
    return rss_kib(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--accepted-concurrency", type=int, default=5)
    parser.add_argument("--unloaded", type=int, default=1500, help="accepted handshakes for the unloaded rate")
    parser.add_argument(
        "--paced-fraction", type=float, default=0.5, help="the second flood's offered rate, of the first's"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsguard-flood-") as tmp:
        env = prepare(Path(tmp))
        with daphne(APP, tmp_dir=Path(tmp), **env) as server:
            pid = server.process.pid
            headers = accepted_headers()
            warm = warm_up(server.port, headers, count=300)
            assert warm.count(101) == 300, warm.summary()
            warm = asyncio.run(flood(server.port, 1000, args.concurrency))
            assert warm.count(403) == 1000, warm.summary()
            baseline = settle(pid, 3.0)
            unloaded = run_load(server.port, args.unloaded, args.accepted_concurrency, headers=headers, host=HOST)
            assert unloaded.count(101) == args.unloaded, unloaded.summary()
            print(f"unloaded accepted: {unloaded.summary()}")

            flooded, during, peak = one_flood(server.port, pid, args)
            print(f"flood, as fast as the server answers: {flooded.summary()}")
            print(f"  accepted during it: {during.summary()}")
            after = settle(pid, 5.0)
            rate = flooded.rate * args.paced_fraction
            paced, during2, peak2 = one_flood(server.port, pid, args, rate=rate)
            after2 = settle(pid, 5.0)
            print(f"flood offered at {rate:,.0f}/s ({args.paced_fraction:.0%} of that): {paced.summary()}")
            print(f"  accepted during it: {during2.summary()}")

            log = server.log()
            wsguard_lines = [line for line in log.splitlines() if "wsguard denied websocket handshake" in line]
            suppressed = sum(1 for line in wsguard_lines if "suppressed by the rate limit" in line)
            denials = 2 * args.total + 1000
            print(
                f"server log: {len(wsguard_lines)} wsguard denial lines for {denials:,} denials "
                f"({suppressed} carry a 'suppressed' count); tracebacks: {log.count('Traceback')}"
            )
        for name, result in (("flood", flooded), ("paced flood", paced)):
            if result.count(403) != args.total:
                print(f"WARNING: {name} got {result.summary()}")
        for name, result, accepted in (("as fast as it goes", flooded, during), ("paced", paced, during2)):
            ratio = accepted.rate / unloaded.rate if unloaded.rate else 0.0
            print(
                f"accepted handshakes during a flood of {args.total:,} rejected "
                f"({name}, {result.rate:,.0f}/s rejected): "
                f"{accepted.rate:,.0f}/s vs {unloaded.rate:,.0f}/s unloaded = {ratio:.2f}x "
                f"(target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})"
            )
        mib = 1024
        print(
            f"daphne RSS: baseline {baseline / mib:.1f} MiB, peak {peak / mib:.1f} MiB "
            f"(+{(peak - baseline) / mib:.1f}), after {after / mib:.1f} MiB ({(after - baseline) / mib:+.1f}); "
            f"second flood: peak {peak2 / mib:.1f} MiB, after {after2 / mib:.1f} MiB "
            f"({(after2 - after) / mib:+.1f} MiB against after the first = "
            f"{(after2 - after) * 1024 / args.total:+.0f} bytes per rejected handshake)"
        )


if __name__ == "__main__":
    main()
