"""Is the handshake path linear? The whole :func:`wsguard.GuardStack` timed on hostile headers at
sizes n, 10n and 100n, with the ratio of each step printed.

    .venv/bin/python bench/fuzz_scaling.py [--n 1000] [--repeat 5]

Each case builds one websocket scope whose hostile part grows with the size (an Origin value of
``size`` bytes, ``size // 10`` duplicated Origin headers, a Cookie header with ``size // 10`` cookies,
a 100 kB session id at 100n, ``size // 10`` Sec-WebSocket-Protocol entries, an Authorization value of
``size`` bytes, a query string with ``size // 10`` parameters, ...) and drives it through the real
stack in-process, in front of an application that accepts: origin guard, Channels' cookie and
session middleware, the authentication step (on an in-memory SQLite test database, so a session
lookup is a real query) and the live-socket watch. ``--n 1000`` makes the largest values 100 kB and
the largest lists 10,000 entries.

A step ratio near 10 (or below: a fixed per-handshake cost dilutes it) is linear; a quadratic path
would show about 100. ``marginal`` subtracts the cost of a plain handshake that reaches the same
outcome, so that the fixed part does not hide the growth. Every case's outcome (accept or reason
code) is printed; where it differs between sizes, every outcome seen is listed. Prints figures;
asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = b"app.example.com"
TRUSTED = b"https://app.example.com"
Scope = dict[str, Any]


def _scope(headers: list[tuple[bytes, bytes]], *, query: bytes = b"", subprotocols: list[str] | None = None) -> Scope:
    return {
        "type": "websocket",
        "path": "/ws/echo/",
        "raw_path": b"/ws/echo/",
        "query_string": query,
        "headers": headers,
        "subprotocols": subprotocols or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "wss",
    }


def _base(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"host", HOST), (b"origin", TRUSTED), *extra]


def _protocols(size: int) -> Scope:
    entries = ["wsguard", *(f"p{i}" for i in range(size // 10))]
    return _scope(_base((b"sec-websocket-protocol", ", ".join(entries).encode())), subprotocols=entries)


def _ticket_protocols(size: int) -> Scope:
    entries = ["wsguard", *(f"wsguard.ticket.t{i}" for i in range(size // 10))]
    return _scope(_base((b"sec-websocket-protocol", ", ".join(entries).encode())), subprotocols=entries)


def _huge_protocol(size: int) -> Scope:
    entries = ["wsguard", "wsguard.bearer.wsg_0123abcd_" + "s" * size]
    return _scope(_base((b"sec-websocket-protocol", ", ".join(entries).encode())), subprotocols=entries)


# name -> (build a scope for a size, the plain scope that reaches the same outcome)
CASES: dict[str, tuple[Callable[[int], Scope], Callable[[], Scope]]] = {
    "Origin: one value of size bytes": (
        lambda s: _scope([(b"host", HOST), (b"origin", TRUSTED + b"x" * s)]),
        lambda: _scope([(b"host", HOST), (b"origin", b"https://evil.example")]),
    ),
    "Origin: size/10 duplicate headers": (
        lambda s: _scope([(b"host", HOST)] + [(b"origin", TRUSTED)] * (s // 10)),
        lambda: _scope([(b"host", HOST), (b"origin", TRUSTED), (b"origin", TRUSTED)]),
    ),
    "Origin: size/10 comma-joined origins": (
        lambda s: _scope([(b"host", HOST), (b"origin", b", ".join([TRUSTED] * (s // 10)))]),
        lambda: _scope([(b"host", HOST), (b"origin", b"https://evil.example")]),
    ),
    "Host: one value of size bytes": (
        lambda s: _scope([(b"host", HOST + b"a" * s), (b"origin", TRUSTED)]),
        lambda: _scope([(b"host", b"evil.example"), (b"origin", TRUSTED)]),
    ),
    "Host: size/10 duplicate headers": (
        lambda s: _scope([(b"host", HOST)] * (s // 10) + [(b"origin", TRUSTED)]),
        lambda: _scope([(b"host", HOST), (b"host", HOST), (b"origin", TRUSTED)]),
    ),
    "Cookie: size/10 cookies, no session": (
        lambda s: _scope(_base((b"cookie", b"; ".join(b"c%d=v%d" % (i, i) for i in range(s // 10))))),
        lambda: _scope(_base((b"cookie", b"c0=v0"))),
    ),
    "Cookie: sessionid of size bytes": (
        lambda s: _scope(_base((b"cookie", b"sessionid=" + b"s" * s))),
        lambda: _scope(_base((b"cookie", b"sessionid=" + b"s" * 32))),
    ),
    "Cookie: size/10 Cookie headers": (
        lambda s: _scope(_base(*[(b"cookie", b"c%d=v" % i) for i in range(s // 10)])),
        lambda: _scope(_base((b"cookie", b"c0=v"))),
    ),
    "Sec-WebSocket-Protocol: size/10 entries": (_protocols, lambda: _protocols(10)),
    "Sec-WebSocket-Protocol: size/10 ticket entries": (_ticket_protocols, lambda: _ticket_protocols(20)),
    "Sec-WebSocket-Protocol: a bearer of size bytes": (_huge_protocol, lambda: _huge_protocol(10)),
    "Authorization: Bearer of size bytes": (
        lambda s: _scope(_base((b"authorization", b"Bearer " + b"t" * s))),
        lambda: _scope(_base((b"authorization", b"Bearer " + b"t" * 10))),
    ),
    "Authorization: size/10 headers": (
        lambda s: _scope(_base(*[(b"authorization", b"Bearer wsg_0123abcd_t%d" % i) for i in range(s // 10)])),
        lambda: _scope(_base(*[(b"authorization", b"Bearer wsg_0123abcd_t%d" % i) for i in range(2)])),
    ),
    "query string: ticket of size bytes": (
        lambda s: _scope(_base(), query=b"ticket=" + b"q" * s),
        lambda: _scope(_base(), query=b"ticket=q"),
    ),
    "query string: size/10 parameters": (
        lambda s: _scope(_base(), query=b"&".join(b"ticket=%d" % i for i in range(s // 10))),
        lambda: _scope(_base(), query=b"ticket=1&ticket=2"),
    ),
    "every header: size/10 junk headers": (
        lambda s: _scope(_base(*[(b"x-junk-%d" % i, b"v" * 10) for i in range(s // 10)])),
        lambda: _scope(_base((b"x-junk-0", b"v" * 10))),
    ),
}


async def _accept(scope: Scope, receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await receive()


async def _drive(app: Any, scope: Scope) -> str:
    incoming: asyncio.Queue[dict] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(dict(scope), incoming.get, send)
    first = sent[0] if sent else {}
    if first.get("type") == "websocket.accept":
        return "accept"
    return f"{first.get('code')} {first.get('reason')}"


async def _time(app: Any, scope: Scope, repeat: int) -> tuple[float, str]:
    """Best wall time of ``repeat`` handshakes (seconds) and the outcome."""
    outcome = await _drive(app, scope)  # warm: imports, caches
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        again = await _drive(app, scope)
        best = min(best, time.perf_counter() - started)
        if again != outcome:
            raise AssertionError(f"outcome changed between runs: {outcome} then {again}")
    return best, outcome


async def _run(args: argparse.Namespace) -> None:
    from wsguard import GuardStack
    from wsguard.live import listener

    app = GuardStack(_accept)
    sizes = [args.n, args.n * 10, args.n * 100]
    print(f"sizes n={sizes[0]:,}, 10n={sizes[1]:,}, 100n={sizes[2]:,}; best of {args.repeat} per point")
    header = (
        f"{'case':48} | {'outcome':24} | {'plain':>8} | {'n':>9} | {'10n':>9} | {'100n':>9} | "
        f"{'10n/n':>6} | {'100n/10n':>8} | {'marginal 100n/10n':>17}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, (build, plain) in CASES.items():
        base_time, _ = await _time(app, plain(), args.repeat)
        times, outcomes = [], set()
        for size in sizes:
            took, outcome = await _time(app, build(size), args.repeat)
            times.append(took)
            outcomes.add(outcome)
        step1, step2 = times[1] / times[0], times[2] / times[1]
        extra_10n, extra_100n = times[1] - base_time, times[2] - base_time
        # "flat": at 10n the case costs no more than the plain handshake (nothing grew to measure).
        marginal = f"{extra_100n / extra_10n:17.2f}" if extra_10n > 0.02 * base_time else f"{'flat':>17}"
        worst = max(worst, step2)
        print(
            f"{name:48} | {' / '.join(sorted(outcomes)):24} | {base_time * 1e3:6.2f}ms | {times[0] * 1e3:7.2f}ms | "
            f"{times[1] * 1e3:7.2f}ms | {times[2] * 1e3:7.2f}ms | {step1:6.2f} | {step2:8.2f} | {marginal}"
        )
    print(f"largest 100n/10n step: {worst:.2f}x (linear: <= ~10; quadratic would be ~100)")
    await listener.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="the smallest size (bytes; entries are size/10)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import override_settings, setup_test_environment

    # Denials are logged through the rate-limited log; keep them off the benchmark's output.
    wsguard_logger = logging.getLogger("wsguard")
    wsguard_logger.addHandler(logging.NullHandler())
    wsguard_logger.propagate = False
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        from django.conf import settings

        # The per-address handshake limit would refuse the repeats (4429) and hide the path under test.
        with override_settings(WSGUARD={**settings.WSGUARD, "HANDSHAKE_RATE": None}):
            asyncio.run(_run(args))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
