from __future__ import annotations

from django.urls import path

from .chat.routing import websocket_urlpatterns as chat_routes
from .consumers import EchoConsumer

websocket_urlpatterns = [
    *chat_routes,
    path("ws/echo/", EchoConsumer.as_asgi()),
]
