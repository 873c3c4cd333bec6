"""The control for the browser tests: the demo's own chat consumer behind Channels' bare
``AuthMiddlewareStack``, with no wsguard in front of it. This is how many Channels projects ship.

The hostile page that wsguard blocks must hijack this app in the same test; if it did not, the
browser test could not tell "wsguard blocked it" from "the attack never worked".

    daphne -p PORT tests.control_app:application   (with the demo's settings and database)
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from demo_project.chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
