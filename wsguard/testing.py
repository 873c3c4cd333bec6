"""Helpers for your own consumer tests: a ``WebsocketCommunicator`` that arrives the way a real
client would, through the whole wsguard stack, in one line::

    from wsguard.testing import communicator

    async def test_chat(alice):
        comm = await communicator(application, "/ws/chat/lobby/", user=alice)               # session cookie
        comm = await communicator(application, "/ws/chat/lobby/", user=alice, via="ticket")  # one-time ticket
        comm = await communicator(application, "/ws/chat/lobby/", user=alice, via="token")   # API token
        connected, subprotocol = await comm.connect()

``application`` is what you serve (``demo_project.asgi.application``, or
``GuardStack(URLRouter(...))``). The Origin defaults to the test host's own origin
(``http://testserver``), which the stack trusts as same-origin; pass ``origin=`` to test another.
``build_communicator`` is the synchronous twin, for synchronous set-up code.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Literal

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

from .auth import BEARER_PROTOCOL_PREFIX, PLAIN_PROTOCOL, TICKET_PROTOCOL_PREFIX

Via = Literal["session", "ticket", "token", "bearer-header"]
TEST_HOST = "testserver"
SAME_ORIGIN = object()


class GuardedCommunicator(WebsocketCommunicator):
    """A communicator that remembers the credentials it was built with."""

    session_key: str | None = None
    ticket: str | None = None
    token: str | None = None
    token_id: int | None = None


def login_session(user: Any, backend: str | None = None) -> Any:
    """A saved session in which ``user`` is logged in, as ``django.contrib.auth.login`` makes it."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = user._meta.pk.value_to_string(user)
    store[BACKEND_SESSION_KEY] = backend or getattr(user, "backend", None) or settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    store.save()
    return store


def build_communicator(
    application: Any,
    path: str,
    *,
    user: Any = None,
    via: Via = "session",
    origin: str | object | None = SAME_ORIGIN,
    host: str = TEST_HOST,
    secure: bool = False,
    subprotocols: list[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = None,
) -> GuardedCommunicator:
    """Synchronous: creates the session, ticket or token in the database and cache."""
    scheme = "https" if secure else "http"
    all_headers: list[tuple[bytes, bytes]] = [(b"host", host.encode())]
    if origin is SAME_ORIGIN:
        all_headers.append((b"origin", f"{scheme}://{host}".encode()))
    elif isinstance(origin, str):
        all_headers.append((b"origin", origin.encode()))
    protocols = list(subprotocols or [])
    session_key = ticket = token = None
    token_id = None
    if user is not None:
        if via in ("session", "ticket"):
            session_key = login_session(user).session_key
            all_headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
        if via == "ticket":
            from .auth import tickets

            bound = f"{scheme}://{host}" if origin is SAME_ORIGIN or not isinstance(origin, str) else origin
            ticket, _ = tickets.mint(user, origin=bound, session_key=session_key)
            protocols = [PLAIN_PROTOCOL, TICKET_PROTOCOL_PREFIX + ticket, *protocols]
        elif via in ("token", "bearer-header"):
            from .auth.tokens import create_token

            row, token = create_token(user, name="wsguard.testing")
            token_id = row.pk
            if via == "token":
                protocols = [PLAIN_PROTOCOL, BEARER_PROTOCOL_PREFIX + token, *protocols]
            else:
                all_headers.append((b"authorization", f"Bearer {token}".encode()))
    all_headers.extend(headers or [])
    comm = GuardedCommunicator(application, path, headers=all_headers, subprotocols=protocols or None)
    comm.scope["scheme"] = "wss" if secure else "ws"
    if client is not None:
        comm.scope["client"] = client
    comm.session_key, comm.ticket, comm.token, comm.token_id = session_key, ticket, token, token_id
    return comm


async def communicator(application: Any, path: str, **kwargs: Any) -> GuardedCommunicator:
    """:func:`build_communicator` from async tests (the database work runs in a thread)."""
    return await database_sync_to_async(build_communicator)(application, path, **kwargs)
