"""Reusable parts for wsguard's benchmarks: a raw-socket WebSocket handshake load client and a
real daphne process to aim it at.

The client writes each upgrade request itself (so forged, duplicated or odd headers reach the
server byte for byte), reads the response head, records the status code, and closes the TCP
connection (after a close frame when the server upgraded). ``concurrency`` workers pull from one
shared budget of ``total`` handshakes, so the figure is handshakes completed per wall-clock second.

    from bench.common import daphne, run_load

    with daphne("demo_project.asgi:application", WSGUARD_BENCH="1") as server:
        result = run_load(server.port, total=2000, concurrency=20, headers=[("Origin", "https://a.example")])
        print(result.summary())

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import Daphne  # noqa: E402

LOOPBACK = "127.0.0.1"
Header = tuple[str | bytes, str | bytes]
# Status 0 stands for "no HTTP response" (connection refused, reset or timed out).
NO_RESPONSE = 0
# A masked client close frame with code 1000 (RFC 6455 section 5.5.1): lets the server finish the
# socket the ordinary way instead of seeing a reset.
_MASK = b"\x00\x00\x00\x00"
CLOSE_FRAME = b"\x88\x82" + _MASK + struct.pack("!H", 1000)


@dataclass
class LoadResult:
    """What one load run saw: handshakes per status code, errors by kind, and the wall time."""

    total: int
    concurrency: int
    elapsed: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def completed(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != NO_RESPONSE)

    @property
    def rate(self) -> float:
        """Handshakes that got an HTTP answer, per second of wall time."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.errors.items()))
        return (
            f"{self.completed}/{self.total} handshakes in {self.elapsed:.2f}s = {self.rate:,.0f}/s "
            f"(concurrency {self.concurrency}; statuses {statuses or '-'}"
            + (f"; errors {errors}" if errors else "")
            + ")"
        )


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def upgrade_request(port: int, path: str, headers: Sequence[Header], host: str | bytes | None) -> bytes:
    """The bytes of one WebSocket upgrade request (a fresh Sec-WebSocket-Key each time)."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1".encode(),
        b"Host: " + _b(host if host is not None else f"{LOOPBACK}:{port}"),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
    ]
    lines += [_b(name) + b": " + _b(value) for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else NO_RESPONSE


async def handshake_once(
    port: int,
    path: str = "/ws/echo/",
    headers: Sequence[Header] = (),
    host: str | bytes | None = None,
    answer_within: float = 10.0,
) -> int:
    """One handshake: the HTTP status the server answered (101, 403, ...). Raises OSError or
    TimeoutError when there was no answer."""

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            writer.write(upgrade_request(port, path, headers, host))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = parse_status(head)
            if status == 101:
                writer.write(CLOSE_FRAME)
                with contextlib.suppress(OSError):
                    await writer.drain()
            return status
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), answer_within)


async def handshake_load(
    port: int,
    total: int,
    concurrency: int,
    *,
    path: str = "/ws/echo/",
    headers: Sequence[Header] = (),
    host: str | bytes | None = None,
    answer_within: float = 10.0,
) -> LoadResult:
    """Perform ``total`` handshakes with at most ``concurrency`` in flight against 127.0.0.1:port."""
    if total < 0 or concurrency < 1:
        raise ValueError("total must be >= 0 and concurrency >= 1")
    result = LoadResult(total=total, concurrency=concurrency, elapsed=0.0)
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                status = await handshake_once(port, path, headers, host, answer_within)
            except (TimeoutError, asyncio.IncompleteReadError) as exc:
                result.statuses[NO_RESPONSE] += 1
                result.errors[type(exc).__name__] += 1
            except OSError as exc:
                result.statuses[NO_RESPONSE] += 1
                result.errors[type(exc).__name__] += 1
            else:
                result.statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(total, 1)))))
    result.elapsed = time.perf_counter() - started
    return result


def run_load(port: int, total: int, concurrency: int, **kwargs: object) -> LoadResult:
    """:func:`handshake_load` from synchronous code (a benchmark script's main)."""
    return asyncio.run(handshake_load(port, total, concurrency, **kwargs))  # type: ignore[arg-type]


@contextlib.contextmanager
def daphne(
    app: str = "demo_project.asgi:application",
    *,
    tmp_dir: Path | None = None,
    timeout: float = 30.0,
    args: tuple[str, ...] = (),
    **env: str,
) -> Iterator[Daphne]:
    """A real daphne process serving ``app`` (dotted ``module:attribute``) with ``env`` added to
    its environment (DJANGO_SETTINGS_MODULE defaults to tests.settings); stopped on exit. The log
    is in ``server.log()``."""
    with contextlib.ExitStack() as stack:
        if tmp_dir is None:
            tmp_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsguard-bench-")))
        server = Daphne(app=app, env=dict(env), args=args).start(tmp_dir, timeout=timeout)
        try:
            yield server
        finally:
            server.stop()


def warm_up(port: int, headers: Sequence[Header] = (), path: str = "/ws/echo/", count: int = 50) -> LoadResult:
    """A few handshakes so that imports, the policy snapshot and connection pools are ready."""
    return run_load(port, count, min(5, count), headers=headers, path=path)


def ratio_line(name: str, measured: LoadResult, baseline: LoadResult) -> str:
    ratio = measured.rate / baseline.rate if baseline.rate else 0.0
    return f"{name}: {measured.rate:,.0f}/s vs baseline {baseline.rate:,.0f}/s = {ratio:.2f}x"
