"""The demo's minimal websocket application: it tells the client who it is and echoes messages.
All of its security comes from the wsguard stack around it (demo_project/asgi.py)."""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

MAX_ECHO_CHARS = 1000


class TolerantJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON consumer for which a frame that is not JSON arrives as ``None`` (answered with an
    error by ``receive_json``) instead of an exception that closes the socket with 1011."""

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None


class EchoConsumer(TolerantJsonConsumer):
    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        guard = self.scope.get("wsguard") or {}
        await self.send_json(
            {
                "type": "hello",
                "user": user.get_username() if user is not None and user.is_authenticated else None,
                "origin": guard.get("origin"),
                "trusted_by": guard.get("trusted_by"),
            }
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str):
            await self.send_json({"type": "error", "error": "send {\"text\": \"...\"}"})
            return
        await self.send_json({"type": "echo", "text": text[:MAX_ECHO_CHARS]})
