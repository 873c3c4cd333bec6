"""The demo chat on several daphne processes sharing channels-redis (and PostgreSQL when
``DATABASE_URL`` points at one): a message sent on one worker reaches a reader on the other, and
who is online is the same on both."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.cookiejar import CookieJar

import pytest
import websockets.sync.client

from tests.demo_site import DEMO_PASSWORD, DemoSite, start_demo
from tests.servers import Daphne

pytestmark = [pytest.mark.daphne, pytest.mark.redis]


@pytest.fixture(scope="module")
def two_workers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    database = os.environ.get("DATABASE_URL", "")
    extra = {"DATABASE_URL": database} if database.startswith("postgres") else {}
    site = start_demo(tmp_path_factory.mktemp("workers"), control=False, workers=2, REDIS_URL=redis_url, **extra)
    yield site
    site.stop()


def signed_in_socket(server: Daphne, username: str) -> websockets.sync.client.ClientConnection:
    """Sign in over HTTP on ``server``, mint a ticket there, and open the chat socket with it."""
    base = f"http://{server.base}"
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"{base}/accounts/login/"
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', opener.open(login).read().decode()).group(1)
    form = urllib.parse.urlencode({"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": csrf})
    opener.open(urllib.request.Request(login, data=form.encode(), headers={"Referer": login}))
    opener.open(f"{base}/rooms/lobby/").read()
    cookies = {c.name: c.value for c in jar}
    request = urllib.request.Request(
        f"{base}/wsguard/ticket/", data=b"", headers={"X-CSRFToken": cookies["csrftoken"], "Origin": base}
    )
    ticket = json.loads(opener.open(request).read())["ticket"]
    return websockets.sync.client.connect(
        f"ws://{server.base}/ws/chat/lobby/",
        origin=base,
        subprotocols=["wsguard", f"wsguard.ticket.{ticket}"],
        additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
        open_timeout=10,
    )


def next_of(connection: websockets.sync.client.ClientConnection, kind: str, predicate=lambda frame: True) -> dict:
    for _ in range(200):
        frame = json.loads(connection.recv(timeout=15))
        if frame["type"] == kind and predicate(frame):
            return frame
    raise AssertionError(f"no {kind!r} frame")


def test_a_message_on_one_worker_reaches_a_reader_on_the_other(two_workers: DemoSite):
    first, second = two_workers.workers
    with signed_in_socket(first, "alice") as alice, signed_in_socket(second, "bob") as bob:
        assert alice.subprotocol == bob.subprotocol == "wsguard"
        assert next_of(alice, "history")["you"] == "alice"
        assert next_of(bob, "history")["you"] == "bob"
        # Presence travels through Redis too: each side ends up seeing both.
        next_of(alice, "presence", lambda f: f["users"] == ["alice", "bob"])
        next_of(bob, "presence", lambda f: f["users"] == ["alice", "bob"])

        # A fresh nonce: with PostgreSQL the database outlives the run, and a repeated nonce is
        # (rightly) answered with the message stored the first time, not broadcast again.
        alice.send(json.dumps({"type": "message", "text": "across workers", "nonce": uuid.uuid4().hex}))
        ack = next_of(alice, "ack")
        seen = next_of(bob, "message")
        assert seen["message"] == ack["message"]
        assert seen["message"]["text"] == "across workers"

    # And it is in the shared database: a fresh socket on the other worker gets it in its history.
    with signed_in_socket(second, "alice") as again:
        history = next_of(again, "history")
        assert history["messages"][-1]["id"] == ack["id"]
