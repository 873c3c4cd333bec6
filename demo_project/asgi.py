"""ASGI entry point: ``daphne demo_project.asgi:application``. Websocket routes are wrapped in
wsguard's GuardStack; plain HTTP is Django (with static files served, as this is a demo)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from wsguard import GuardStack  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": GuardStack(URLRouter(websocket_urlpatterns)),
    }
)
