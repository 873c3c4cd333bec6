from __future__ import annotations

from django.urls import path

from wsguard import guard

from .chat.routing import websocket_urlpatterns as chat_routes
from .consumers import EchoConsumer

websocket_urlpatterns = [
    *chat_routes,
    # Anonymous clients are refused by default; the echo route opts in (wsguard.guard).
    path("ws/echo/", guard(EchoConsumer.as_asgi(), allow_anonymous=True)),
]
