"""Faults under real parts: the demo chat on real daphne workers sharing a PRIVATE redis-server
(started for each test on a free port, no persistence, so stopping it disturbs no other test) and
a SQLite file.

(a) Redis stopped and restarted under live sockets on two workers: no acknowledged message lost,
    nothing admitted during the outage that the policy denies, the chat sockets that lost their
    channel layer closed, and after Redis returns, without restarting daphne, handshakes, fan-out
    across workers and revocation (a logout on one worker closing the socket on the other) work.
(b) The database made unreachable (its directory moved away) under a running worker: the last
    good policy snapshot stays in force even when a policy change is announced, handshakes that need
    the database (session lookup) are refused cleanly (403, reason auth-error, no traceback), and
    once the database is back the worker loads the policy again and applies a change to it.
(c) A worker killed with SIGKILL while clients are connected to both: the survivor keeps serving,
    clients reconnect to it, and no acknowledged message is lost.

Outcomes are recorded in docs/reliability.md."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.demo_site import DemoSite, start_demo
from tests.fault_apps import ChatSocket, ChatUser, PrivateRedis, RedisUnavailable
from tests.servers import Daphne, raw_handshake
from wsguard.live import CONTROL_GROUP

pytestmark = [pytest.mark.daphne, pytest.mark.redis]

EVIL = "https://evil.example"
PARTNER = "https://partner-app.example"
DEADLINE = 45.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    try:
        PrivateRedis.binary()
    except RedisUnavailable as exc:
        if os.environ.get("WSGUARD_REQUIRE_REDIS") == "1":
            pytest.fail(f"WSGUARD_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(f"{exc}: the fault tests start their own redis-server")
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def sites() -> Iterator[list[DemoSite]]:
    started: list[DemoSite] = []
    yield started
    for site in started:
        site.stop()


def demo(sites: list[DemoSite], tmp_path: Path, redis: PrivateRedis, **kwargs: object) -> DemoSite:
    # Both workers serve one site, as behind one proxy: each trusts the other's origin.
    site = start_demo(
        tmp_path / "site", control=False, REDIS_URL=redis.url, WSGUARD_ALLOWED_ORIGINS="http://127.0.0.1:*", **kwargs
    )
    sites.append(site)
    return site


def eventually(check: Callable[[], object], what: str, seconds: float = DEADLINE) -> object:
    """Poll ``check`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {seconds}s (last: {last!r})")


def close_code(connection: websockets.sync.client.ClientConnection, seconds: float = DEADLINE) -> int | None:
    """Wait (bounded) until the server closes ``connection``; the close code it sent (1006 when
    the connection just dropped), None if it stayed open."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            connection.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else 1006
    except TimeoutError:
        pass
    return None


def stored_ids(site: DemoSite) -> set[int]:
    with sqlite3.connect(site.var_dir / "db.sqlite3", timeout=10) as db:
        return {row[0] for row in db.execute("SELECT id FROM chat_message")}


def control_group(redis_server: PrivateRedis) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        return client.zrange(f"asgi:group:{CONTROL_GROUP}", 0, -1)
    finally:
        client.close()


def tail(server: Daphne, chars: int = 6000) -> str:
    lines = [line for line in server.log().splitlines() if " - - [" not in line]  # no access log
    return "\n".join(lines)[-chars:]


def acked_ids(*sockets: ChatSocket) -> set[int]:
    return {message["id"] for socket in sockets for message in socket.acked}


def refused(server: Daphne, origin: str | None, cookie: str | None = None, path: str = "/ws/chat/lobby/") -> int:
    headers = [("Origin", origin)] if origin is not None else []
    if cookie:
        headers.append(("Cookie", cookie))
    status, _ = raw_handshake(server.port, path, headers, timeout=15)
    return status


def test_redis_stopped_and_restarted_under_live_sockets(private_redis, sites, tmp_path):
    site = demo(sites, tmp_path, private_redis, workers=2)
    a, b = site.workers
    alice, bob = ChatUser("alice", a).login(), ChatUser("bob", b).login()
    alice_a, bob_b = alice.connect(a), bob.connect(b)
    assert alice_a.say("before the outage")["type"] == "ack"
    assert bob_b.next("message")["message"]["text"] == "before the outage"
    assert bob_b.say("bob before the outage")["type"] == "ack"

    private_redis.stop()
    # The chat consumers read their channel from Redis: losing it closes their sockets (Channels
    # ends the consumer, daphne sends 1011), so the page reconnects instead of silently missing
    # messages. A message sent meanwhile is either acknowledged (then stored) or not at all.
    for socket in (alice_a, bob_b):
        try:
            socket.say("during the outage")
        except (ConnectionClosed, TimeoutError):
            pass
    assert close_code(alice_a.connection) == 1011
    assert close_code(bob_b.connection) == 1011
    # Nothing the policy denies is admitted; what needs the cache (the rate counter) fails closed.
    for server in (a, b):
        assert refused(server, EVIL, alice.cookie_header()) == 403
        assert refused(server, None, alice.cookie_header()) == 403
        assert refused(server, EVIL, path="/ws/echo/") == 403
        assert refused(server, alice.base, alice.cookie_header()) == 403

    private_redis.start()
    # Each worker's control listener re-joins its group (Redis forgot it) on its own.
    started = time.monotonic()
    eventually(lambda: len(control_group(private_redis)) == 2, "both control listeners back in their group")
    print(f"\ncontrol listeners back in the group {time.monotonic() - started:.1f}s after Redis returned")
    # Recovery without restarting daphne: handshakes, fan-out across workers, revocation.
    alice_b = eventually(lambda: alice.connect(b), "alice reconnects on worker b")
    bob_a = eventually(lambda: bob.connect(a), "bob reconnects on worker a")
    assert alice_b.say("after the outage")["type"] == "ack"
    eventually(lambda: bob_a.next("message")["message"]["text"] == "after the outage", "fan-out across workers")
    assert len(control_group(private_redis)) == 2
    assert alice.logout() == 200
    assert close_code(alice_b.connection) == 4401, (
        f"the logout on a did not reach the socket on b:\n{tail(a)}\n-----\n{tail(b)}"
    )
    assert "reason=logged-out close=4401" in b.log()
    assert "control listener reconnected to the channel layer" in b.log()
    assert bob_a.say("bob is still here")["type"] == "ack"

    acked = acked_ids(alice_a, bob_b, alice_b, bob_a)
    assert len(acked) >= 4
    assert acked <= stored_ids(site), "an acknowledged message is missing from the history"
    for server in (a, b):
        assert "wsguard: the authentication step failed" not in server.log()


def test_database_unreachable_keeps_the_last_good_policy_and_refuses_cleanly(private_redis, sites, tmp_path):
    site = demo(sites, tmp_path, private_redis, trusted_origins=(PARTNER,))
    server = site.chat
    alice = ChatUser("alice", server).login()
    alice.connect(server).close()
    held = websockets.sync.client.connect(f"ws://{server.base}/ws/echo/", origin=PARTNER, open_timeout=15).__enter__()
    assert '"trusted_by": "admin:' in held.recv(timeout=15)

    away = site.var_dir.with_name("var-away")
    mark = len(server.log())
    site.var_dir.rename(away)
    try:
        # An admin's change is announced while the database cannot be read: the worker tries to
        # reload, fails, and keeps the snapshot it has.
        site.manage("shell", "-c", "from wsguard.sync import policy_changed; policy_changed()")
        eventually(
            lambda: "loading trusted origins from the database failed" in server.log(),
            "the worker tried to reload the policy",
        )
        assert refused(server, PARTNER, path="/ws/echo/") == 101, "the last good policy is not in force"
        assert refused(server, EVIL, path="/ws/echo/") == 403
        held.send('{"text": "still here"}')
        assert '"still here"' in held.recv(timeout=15)
        # The session lookup needs the database: refused, cleanly.
        assert refused(server, alice.base, alice.cookie_header()) == 403
        assert refused(server, EVIL, alice.cookie_header()) == 403
        outage_log = server.log()[mark:]
        assert "reason=auth-error" in outage_log
        assert "could not reach the database or cache (OperationalError)" in outage_log
        assert "Traceback" not in outage_log, outage_log[-5000:]
    finally:
        away.rename(site.var_dir)

    # Back, without a restart: sessions work again, the policy is reloaded, and a change applies.
    eventually(lambda: alice.connect(server), "a session handshake after the database is back").close()
    eventually(
        lambda: "loading trusted origins from the database works again" in server.log(),
        "the worker reloaded the policy",
    )
    site.manage("wsguard_origins", "remove", PARTNER)
    assert close_code(held) == 4403, "a socket from an origin no longer trusted stayed open"
    eventually(lambda: refused(server, PARTNER, path="/ws/echo/") == 403, "the removed origin refused")


def test_a_worker_killed_while_clients_are_connected_to_both(private_redis, sites, tmp_path):
    site = demo(sites, tmp_path, private_redis, workers=2)
    a, b = site.workers
    alice, bob = ChatUser("alice", a).login(), ChatUser("bob", b).login()
    alice_a, bob_b, alice_b = alice.connect(a), bob.connect(b), alice.connect(b)
    assert alice_a.say("one")["type"] == "ack"
    assert bob_b.say("two")["type"] == "ack"

    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=10)
    assert close_code(alice_a.connection) == 1006

    # The survivor keeps serving its sockets, and the killed worker's clients reconnect to it.
    assert bob_b.say("three")["type"] == "ack"
    eventually(lambda: alice_b.next("message")["message"]["text"] == "three", "fan-out on the survivor")
    again = alice.connect(b)
    assert acked_ids(alice_a, bob_b) <= {m["id"] for m in again.history["messages"]}
    assert again.say("four")["type"] == "ack"
    eventually(lambda: bob_b.next("message")["message"]["text"] == "four", "the reconnected client is heard")
    assert refused(b, EVIL, alice.cookie_header()) == 403

    acked = acked_ids(alice_a, bob_b, alice_b, again)
    assert len(acked) == 4
    assert acked <= stored_ids(site)
    assert "Traceback" not in b.log(), b.log()[-5000:]
