"""Database queries per accepted handshake, counted on every connection in every thread: the
origin decision makes none; a session makes one with cached sessions (the user); a ticket's
redemption makes one (the user; the ticket itself lives in the cache); a token one."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer

from tests.queries import count_queries
from wsguard import sync
from wsguard.middleware import GuardStack
from wsguard.testing import communicator

pytestmark = pytest.mark.django_db(transaction=True)


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept("wsguard" if "wsguard" in self.scope["subprotocols"] else None)


async def accepted_queries(user, via: str) -> list[str]:
    # Steady state: the policy rows are loaded once per process, not per handshake.
    await sync.refresh()
    app = GuardStack(Accepting.as_asgi())
    comm = await communicator(app, "/ws/", user=user, via=via)
    with count_queries() as queries:
        connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()
    return [q for q in queries if q != "<new connection>"]


async def test_a_session_handshake_makes_one_query_with_cached_sessions(alice, settings):
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.cached_db"
    queries = await accepted_queries(alice, "session")
    assert len(queries) == 1, queries
    assert "auth_user" in queries[0]


async def test_a_ticket_redemption_loads_only_the_user(alice):
    queries = await accepted_queries(alice, "ticket")
    assert len(queries) == 1, queries
    assert "auth_user" in queries[0]


async def test_a_token_handshake_loads_token_and_user_in_one_query(alice):
    queries = await accepted_queries(alice, "token")
    # The first use of a token also records last_used_at (at most once a minute).
    assert 1 <= len(queries) <= 2, queries
    assert "wsguard_apitoken" in queries[0] and "auth_user" in queries[0]
