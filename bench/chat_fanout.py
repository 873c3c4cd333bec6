"""Chat fan-out through channels-redis with two daphne processes.

200 clients join one room of the demo chat, half on each of two daphne workers sharing one Redis
channel layer (and one database). Some of them send messages; every message goes to all 200.
Measured for wsguard's stack (demo_project.asgi) and, in the same run with the same servers,
Redis, database and clients, for the same consumer behind Channels' bare AuthMiddlewareStack
(tests/control_app.py) as the baseline:

* paced: ``--rate`` messages per second for ``--seconds``: delivery latency p50/p99 (send to
  receipt, one clock: all clients live in this process);
* flood: ``--flood`` messages sent as fast as the senders' windows allow: messages and deliveries
  per second until the last client has the last message, and the latency under that load.

Every message is stored in the database before it is broadcast (the chat's rule), so the database
is part of what is measured. The clients (200 sockets, JSON parsing) run in this one Python
process on the same machine as the servers; on a small machine they are a large part of the cost.

    REDIS_URL=redis://127.0.0.1:6379/3 DATABASE_URL=postgres://postgres@127.0.0.1:5432/wsg_demo \\
        .venv/bin/python bench/chat_fanout.py

Only 127.0.0.1 is contacted.
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
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import daphne  # noqa: E402

SETTINGS = "bench.chat_fanout_settings"
GUARDED_APP = "demo_project.asgi:application"
BASELINE_APP = "tests.control_app:application"
ROOM = "bench"
USERS = 20
SENDERS = 4
WINDOW = 8


@dataclass
class Phase:
    name: str
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def delivered_one(self, latency: float) -> None:
        self.delivered += 1
        self.latencies.append(latency)
        if self.delivered >= self.expected:
            self.done.set()

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name}: {self.sent} messages in {self.elapsed:.2f}s = {self.sent / self.elapsed:,.1f} msg/s, "
            f"{self.delivered:,} deliveries = {self.delivered / self.elapsed:,.0f}/s, "
            f"latency p50 {self.percentile(0.50):.0f} ms p99 {self.percentile(0.99):.0f} ms, lost {self.lost}"
        )


def prepare(env: dict[str, str], clients: int) -> list[tuple[str, str]]:
    """Migrate, create the bench users and room, and return one (session cookie, user) per client."""
    script = f"""
import json
from django.conf import settings
from django.contrib.auth import get_user_model, HASH_SESSION_KEY, SESSION_KEY, BACKEND_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from demo_project.chat.models import Room, Message
call_command("migrate", interactive=False, verbosity=0)
room, _ = Room.objects.get_or_create(slug={ROOM!r}, defaults={{"title": "Bench"}})
Message.objects.filter(room=room).delete()
users = []
for i in range({USERS}):
    user, created = get_user_model().objects.get_or_create(username=f"bench{{i:02d}}")
    if created:
        user.set_unusable_password(); user.save()
    users.append(user)
out = []
for n in range({clients}):
    user = users[n % len(users)]
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    out.append([settings.SESSION_COOKIE_NAME + "=" + store.session_key, user.username])
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return [tuple(item) for item in json.loads(done.stdout.strip().splitlines()[-1])]


class Client:
    def __init__(self, index: int, port: int, cookie: str) -> None:
        self.index = index
        self.port = port
        self.cookie = cookie
        self.connection = None
        self.history = asyncio.Event()
        self.acks: asyncio.Queue = asyncio.Queue()
        self.phase: Phase | None = None
        self.last_presence = 0.0
        self.task: asyncio.Task | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        origin = f"http://127.0.0.1:{self.port}"
        self.connection = await connect(
            f"ws://127.0.0.1:{self.port}/ws/chat/{ROOM}/",
            origin=origin,
            additional_headers={"Cookie": self.cookie},
            open_timeout=60,
            max_queue=None,
            ping_interval=None,
        )
        self.task = asyncio.get_running_loop().create_task(self.read())

    async def read(self) -> None:
        async for frame in self.connection:
            now = time.perf_counter()
            data = json.loads(frame)
            kind = data["type"]
            if kind == "message":
                phase = self.phase
                text = data["message"]["text"]
                if phase is not None and text.startswith(phase.name + ":"):
                    phase.delivered_one(now - float(text.rsplit(":", 1)[1]))
            elif kind == "ack":
                self.acks.put_nowait(data)
            elif kind == "history":
                self.history.set()
            elif kind == "presence":
                self.last_presence = now

    async def send(self, phase: Phase, seq: int) -> None:
        text = f"{phase.name}:{self.index}:{seq}:{time.perf_counter()!r}"
        await self.connection.send(json.dumps({"type": "message", "text": text}))

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


async def settle(phase: Phase, seconds: float) -> None:
    """Until every client has every message of ``phase`` (or ``seconds``: then some were lost)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(phase.done.wait(), seconds)


async def measure(ports: list[int], cookies: list[tuple[str, str]], args: argparse.Namespace) -> list[Phase]:
    clients = [Client(i, ports[i % len(ports)], cookie) for i, (cookie, _) in enumerate(cookies)]
    for batch in range(0, len(clients), 20):
        await asyncio.gather(*(c.open() for c in clients[batch : batch + 20]))
    await asyncio.wait_for(asyncio.gather(*(c.history.wait() for c in clients)), 60)
    # Let the presence traffic of 200 joins die down: measure chat messages, not joins.
    quiet_since = time.perf_counter()
    for _ in range(1200):
        await asyncio.sleep(0.1)
        last = max(c.last_presence for c in clients)
        if time.perf_counter() - max(last, quiet_since) > 1.0:
            break
    senders = clients[:SENDERS]
    phases = []
    try:
        # Warm-up: imports, connection pools, the database.
        warm = Phase("warm", sent=10, expected=10 * len(clients))
        for c in clients:
            c.phase = warm
        for seq in range(warm.sent):
            await senders[seq % SENDERS].send(warm, seq)
        await settle(warm, 30)

        total = int(args.rate * args.seconds)
        paced = Phase("paced", sent=total, expected=total * len(clients))
        for c in clients:
            c.phase = paced
        started = time.perf_counter()
        for seq in range(total):
            await asyncio.sleep(max(0.0, started + seq / args.rate - time.perf_counter()))
            await senders[seq % SENDERS].send(paced, seq)
        await settle(paced, 60)
        paced.elapsed = time.perf_counter() - started
        phases.append(paced)

        per_sender = args.flood // SENDERS
        flood = Phase("flood", sent=per_sender * SENDERS, expected=per_sender * SENDERS * len(clients))
        for c in clients:
            c.phase = flood
        for c in senders:
            while not c.acks.empty():
                c.acks.get_nowait()

        async def send_all(sender: Client) -> None:
            in_flight = 0
            for seq in range(per_sender):
                if in_flight >= WINDOW:
                    await asyncio.wait_for(sender.acks.get(), 60)
                    in_flight -= 1
                await sender.send(flood, seq)
                in_flight += 1

        started = time.perf_counter()
        await asyncio.gather(*(send_all(s) for s in senders))
        await settle(flood, 120)
        flood.elapsed = time.perf_counter() - started
        phases.append(flood)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return phases


def run_stack(app: str, env: dict[str, str], tmp: Path, args: argparse.Namespace) -> list[Phase]:
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    cookies = prepare({**os.environ, **env}, args.clients)
    with daphne(app, tmp_dir=tmp, **env) as first, daphne(app, tmp_dir=tmp, **env) as second:
        try:
            return asyncio.run(measure([first.port, second.port], cookies, args))
        except Exception:
            for server in (first, second):
                lines = [line for line in server.log().splitlines() if '"WS' not in line]
                print(f"--- daphne :{server.port} log (tail, without the access log) ---\n" + "\n".join(lines[-60:]))
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="paced phase: messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced phase: duration")
    parser.add_argument("--flood", type=int, default=200, help="flood phase: messages")
    parser.add_argument("--rounds", type=int, default=2, help="each stack this many times, order alternating")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")
    with tempfile.TemporaryDirectory(prefix="wsguard-fanout-") as tmp:
        database = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tmp) / 'db.sqlite3'}"
        env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DJANGO_SECRET_KEY": "bench-not-secret",
            "DEMO_VAR_DIR": tmp,
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "PYTHONPATH": str(ROOT),
        }
        print(
            f"{args.clients} clients in one room on 2 daphne workers; channels-redis {redis_url}; "
            f"database {database.split('://')[0]}; {SENDERS} senders"
        )
        stacks = (("baseline (bare AuthMiddlewareStack)", BASELINE_APP), ("wsguard GuardStack", GUARDED_APP))
        results: dict[str, list[list[Phase]]] = {name: [] for name, _ in stacks}
        for round_no in range(args.rounds):
            # Alternate the order so that neither stack always runs on a warmer (or busier) machine.
            for name, app in stacks if round_no % 2 == 0 else tuple(reversed(stacks)):
                phases = run_stack(app, env, Path(tmp), args)
                results[name].append(phases)
                for phase in phases:
                    print(f"  round {round_no + 1} {name:36} {phase.line()}", flush=True)
    baseline, guarded = (results[name] for name, _ in stacks)
    for index, phase_name in enumerate(("paced", "flood")):
        b, g = summarise(baseline, index), summarise(guarded, index)
        print(
            f"{phase_name} (median of {args.rounds}): "
            f"wsguard {g['msgs']:,.1f} msg/s, {g['rate']:,.0f} deliveries/s, p50 {g['p50']:.0f} ms,"
            f" p99 {g['p99']:.0f} ms"
            f" | baseline {b['msgs']:,.1f} msg/s, {b['rate']:,.0f} deliveries/s, p50 {b['p50']:.0f} ms,"
            f" p99 {b['p99']:.0f} ms | wsguard/baseline deliveries {g['rate'] / b['rate']:.2f}x"
        )


def summarise(runs: list[list[Phase]], index: int) -> dict[str, float]:
    """Medians over the rounds of one phase."""
    phases = [run[index] for run in runs]
    return {
        "msgs": statistics.median(p.sent / p.elapsed for p in phases),
        "rate": statistics.median(p.delivered / p.elapsed for p in phases),
        "p50": statistics.median(p.percentile(0.50) for p in phases),
        "p99": statistics.median(p.percentile(0.99) for p in phases),
    }


if __name__ == "__main__":
    main()
