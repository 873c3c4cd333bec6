"""Hostile input through the whole stack: hypothesis over raw header bytes. Whatever arrives, the
stack never raises, and every outcome is either an accept or a close with a documented code."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsguard.middleware import GuardStack
from wsguard.rejections import CLOSE_CODES

pytestmark = pytest.mark.django_db(transaction=True)

HEADER_NAMES = [
    b"origin",
    b"host",
    b"cookie",
    b"sec-websocket-protocol",
    b"authorization",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"Origin",
    b"HOST",
]
INTERESTING_VALUES = [
    b"https://app.example.com",
    b"app.example.com",
    b"localhost",
    b"null",
    b"sessionid=x; csrftoken=y",
    b"wsguard, wsguard.ticket.abc",
    b"Bearer abc",
    b"https://app.example.com, https://evil.example",
    b"\x00\r\n",
    b"\xff\xfe",
]

values = st.one_of(
    st.sampled_from(INTERESTING_VALUES),
    st.binary(max_size=300),
    st.builds(lambda v, n: v * n, st.sampled_from(INTERESTING_VALUES), st.integers(1, 2000)),
)
headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.binary(min_size=1, max_size=20)), values), max_size=12
)


async def accepting_app(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await receive()


async def drive(app, scope) -> list[dict]:
    incoming = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, incoming.get, send), timeout=30)
    return sent


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header_list=headers,
    path=st.one_of(st.just("/ws/"), st.text(max_size=200)),
    query=st.binary(max_size=200),
    scheme=st.sampled_from(["ws", "wss", "http", "", None]),
    subprotocols=st.lists(st.text(max_size=100), max_size=20),
)
def test_the_stack_never_raises_and_every_outcome_is_documented(header_list, path, query, scheme, subprotocols):
    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "headers": header_list,
        "subprotocols": subprotocols,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    if scheme is not None:
        scope["scheme"] = scheme
    sent = asyncio.run(drive(GuardStack(accepting_app), scope))
    assert sent, "the stack must answer every handshake"
    first = sent[0]
    if first["type"] == "websocket.accept":
        return
    assert first["type"] == "websocket.close"
    assert first["code"] in set(CLOSE_CODES.values())
    assert first["reason"] in CLOSE_CODES


@pytest.mark.parametrize("entries", [1, 1000, 5000])
def test_thousands_of_subprotocols_and_huge_values_are_refused_cleanly(entries):
    scope = {
        "type": "websocket",
        "path": "/ws/",
        "query_string": b"ticket=" + b"a" * 100_000,
        "headers": [
            (b"host", b"app.example.com"),
            (b"origin", b"https://evil.example"),
            (b"sec-websocket-protocol", b", ".join([b"wsguard.ticket." + b"x" * 50] * entries)),
            (b"cookie", b"sessionid=" + b"s" * 100_000),
            (b"authorization", b"Bearer " + b"t" * 100_000),
        ],
        "subprotocols": ["wsguard.ticket." + "x" * 50] * entries,
        "client": ("127.0.0.1", 5000),
        "scheme": "wss",
    }
    sent = asyncio.run(drive(GuardStack(accepting_app), scope))
    assert sent[0] == {"type": "websocket.close", "code": 4403, "reason": "origin-untrusted"}
