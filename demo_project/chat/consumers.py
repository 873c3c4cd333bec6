"""The chat socket: an ordinary Channels consumer.

It trusts ``scope["user"]`` because the wsguard stack in front of it (demo_project/asgi.py) has
already checked the Origin and Host and authenticated the handshake; nothing in here is about
cross-site hijacking. The same consumer behind Channels' bare ``AuthMiddlewareStack``
(tests/control_app.py) is hijackable, which is the point of the demo.

Protocol (JSON text frames):
  page -> server  {"type": "message", "text": "...", "nonce": "..."}
  server -> page  {"type": "history", "room": ..., "you": ..., "messages": [...], "max_chars": ...}
                  {"type": "message", "message": {"id", "author", "text", "at"}}
                  {"type": "ack", "nonce": ..., "id": ..., "message": {...}}   (only once it is stored)
                  {"type": "presence", "users": [...]}
                  {"type": "error", "code": ..., "detail": ..., "nonce": ...}
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from ..consumers import TolerantJsonConsumer
from . import store
from .models import MAX_MESSAGE_CHARS

logger = logging.getLogger(__name__)

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NO_SUCH_ROOM = 4404


PRESENCE_DEBOUNCE_SECONDS = 0.05

# Who is in each room on *this* process: {room id: {channel name: username}}. A newcomer reads its
# local neighbours here; each other process answers its join with one "here" message listing its
# members, so a join costs one reply per process rather than one per member.
_local_rosters: dict[int, dict[str, str]] = {}


def room_group(room_id: int) -> str:
    return f"chat.room.{room_id}"


class ChatConsumer(TolerantJsonConsumer):
    room: Any = None
    group: str | None = None
    username: str = ""
    _presence_task: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_SIGNED_IN)
            return
        slug = self.scope["url_route"]["kwargs"]["room"]
        self.room = await database_sync_to_async(store.room_by_slug)(slug)
        if self.room is None:
            await self.close(code=CLOSE_NO_SUCH_ROOM)
            return
        self.user = user
        self.username = user.get_username()
        self.group = room_group(self.room.pk)
        # Join the group before reading the history: a message sent in between then arrives
        # twice (the page drops the duplicate by id) rather than not at all.
        await self.channel_layer.group_add(self.group, self.channel_name)
        local = _local_rosters.setdefault(self.room.pk, {})
        local[self.channel_name] = self.username
        self.online: dict[str, str] = dict(local)
        await self.accept()
        history = await database_sync_to_async(store.recent_messages)(self.room)
        await self.send_json(
            {
                "type": "history",
                "room": {"slug": self.room.slug, "title": self.room.title},
                "you": self.username,
                "messages": history,
                "max_chars": MAX_MESSAGE_CHARS,
            }
        )
        await self.channel_layer.group_send(
            self.group, {"type": "presence.join", "channel": self.channel_name, "user": self.username}
        )

    async def disconnect(self, code: int) -> None:
        if self.group is None:
            return
        if self._presence_task is not None:
            self._presence_task.cancel()
        local = _local_rosters.get(self.room.pk, {})
        local.pop(self.channel_name, None)
        if not local:
            _local_rosters.pop(self.room.pk, None)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.channel_layer.group_send(self.group, {"type": "presence.leave", "channel": self.channel_name})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            await self.send_json({"type": "error", "code": "bad-message", "detail": "send JSON text frames"})
            return
        await super().receive(text_data=text_data, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        nonce: Any = content.get("nonce") if isinstance(content, dict) else None
        try:
            if not isinstance(content, dict) or content.get("type") != "message":
                raise store.InvalidMessage("bad-message", 'send {"type": "message", "text": "..."}')
            nonce = store.clean_nonce(nonce)
            text = store.clean_text(content.get("text"))
        except store.InvalidMessage as exc:
            await self.send_json(
                {
                    "type": "error",
                    "code": exc.code,
                    "detail": exc.detail,
                    "nonce": nonce if isinstance(nonce, str) and len(nonce) <= 64 else None,
                }
            )
            return
        try:
            event, created = await database_sync_to_async(store.save_message)(self.room, self.user, text, nonce)
        except Exception:
            logger.exception("chat: storing a message failed")
            await self.send_json(
                {"type": "error", "code": "not-saved", "detail": "not stored, send it again", "nonce": nonce}
            )
            return
        # Stored (committed) first, then shown to the room, then acknowledged to the sender.
        if created:
            await self.channel_layer.group_send(self.group, {"type": "chat.message", "message": event})
        await self.send_json({"type": "ack", "nonce": nonce, "id": event["id"], "message": event})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": event["message"]})

    async def presence_join(self, event: dict[str, Any]) -> None:
        joiner = event["channel"]
        self.online[joiner] = event["user"]
        local = _local_rosters.get(self.room.pk, {})
        if joiner not in local and local and min(local) == self.channel_name:
            # The joiner is on another process: one member here (the same one every time) tells it
            # who is on this process.
            try:
                await self.channel_layer.send(joiner, {"type": "presence.here", "users": dict(local)})
            except ChannelFull:
                # Presence is best effort: under a burst of joins the newcomer may miss names
                # until their next change, which is better than closing this socket.
                logger.info("chat: presence reply dropped, the channel layer is full")
        self.presence_changed()

    async def presence_here(self, event: dict[str, Any]) -> None:
        self.online.update(event["users"])
        self.presence_changed()

    async def presence_leave(self, event: dict[str, Any]) -> None:
        if self.online.pop(event["channel"], None) is not None:
            self.presence_changed()

    def presence_changed(self) -> None:
        # Coalesced: a burst of joins becomes one frame to the page, not one per join.
        if self._presence_task is None or self._presence_task.done():
            self._presence_task = asyncio.get_running_loop().create_task(self._send_presence_soon())

    async def _send_presence_soon(self) -> None:
        await asyncio.sleep(PRESENCE_DEBOUNCE_SECONDS)
        await self.send_json({"type": "presence", "users": sorted(set(self.online.values()))})
