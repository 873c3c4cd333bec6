"""Test-only ASGI applications for the probe, each served by a real daphne process
(``tests.probe_apps:<name>``). None of them uses wsguard; two are deliberately vulnerable."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

# The cookie value the "auth required" app insists on; tests check it never appears in output.
SESSION_COOKIE = "sessionid=probe-test-s3cret-value"


class AcceptingConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


# The textbook CSWSH hole: Channels' auth stack with no origin check at all.
vulnerable_application = ProtocolTypeRouter(
    {"websocket": AuthMiddlewareStack(URLRouter([path("ws/", AcceptingConsumer.as_asgi())]))}
)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first header called ``name``, as naive code that does dict lookups ends up with."""
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


async def _answer(receive: Receive, send: Send, accept: bool) -> None:
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if not accept:
        await send({"type": "websocket.close", "code": 4403})
        return
    await send({"type": "websocket.accept"})
    while (await receive()).get("type") != "websocket.disconnect":
        pass


async def prefix_application(scope: Scope, receive: Receive, send: Send) -> None:
    """Checks only that the Origin STARTS WITH the trusted origin: the classic naive check. The
    trusted origin is ``$PROBE_TRUSTED_ORIGIN``, or the site's own (``http://`` + Host)."""
    if scope["type"] != "websocket":
        return
    origin = _header(scope, b"origin") or b""
    configured = os.environ.get("PROBE_TRUSTED_ORIGIN", "").encode()
    own = configured or b"http://" + (_header(scope, b"host") or b"")
    await _answer(receive, send, accept=bool(own) and origin.startswith(own))


async def auth_required_application(scope: Scope, receive: Receive, send: Send) -> None:
    """Exact same-origin check, and a session cookie required: without --cookie the probe cannot
    tell anything, because even the trusted origin is refused."""
    if scope["type"] != "websocket":
        return
    origins = [value for key, value in scope.get("headers") or () if key.lower() == b"origin"]
    own = b"http://" + (_header(scope, b"host") or b"")
    cookie = _header(scope, b"cookie") or b""
    accept = origins == [own] and SESSION_COOKIE.encode() in cookie.split(b"; ")
    await _answer(receive, send, accept=accept)
