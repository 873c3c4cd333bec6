"""ASGI apps for the trusted-origins tests and benchmarks: a tiny echo consumer behind wsguard's
Origin guard and live-socket watch (no authentication layer, so that only the origin decides),
and the same consumer with no guard at all (the benchmark's baseline).

    daphne -p PORT tests.origin_app:guarded      daphne -p PORT tests.origin_app:unguarded
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402 - needs Django set up
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.urls import path  # noqa: E402

from wsguard.live import ConnectionWatch  # noqa: E402
from wsguard.middleware import OriginGuard  # noqa: E402


class Echo(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=(text_data or "")[:1000])


routes = URLRouter([path("ws/echo/", Echo.as_asgi()), path("ws/chat/", Echo.as_asgi())])

guarded = ProtocolTypeRouter({"http": django_asgi_app, "websocket": OriginGuard(ConnectionWatch(routes))})
unguarded = ProtocolTypeRouter({"http": django_asgi_app, "websocket": routes})


def origin_communicator(origin: str, path: str = "/ws/") -> WebsocketCommunicator:
    """A handshake to the origin-only stack from ``origin``, over wss to app.example.com."""
    comm = WebsocketCommunicator(
        OriginGuard(ConnectionWatch(Echo.as_asgi())),
        path,
        headers=[(b"host", b"app.example.com"), (b"origin", origin.encode())],
    )
    comm.scope["scheme"] = "wss"
    return comm
