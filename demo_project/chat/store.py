"""Database access for the chat, in one place: the consumer calls these through
``database_sync_to_async``; views call them directly."""

from __future__ import annotations

import unicodedata

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from .models import MAX_MESSAGE_CHARS, MAX_NONCE_CHARS, Message, Room

HISTORY_SIZE = 50
DEMO_ROOMS = (("lobby", "Lobby"), ("random", "Random"))
# Line breaks and tabs are kept; other control characters (and bidi overrides, which can make a
# message display as something it is not) are dropped.
_KEPT_CONTROLS = {"\n", "\t"}
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


class InvalidMessage(ValueError):
    """A message the chat refuses; ``code`` is sent back to the page."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def clean_text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidMessage("bad-message", 'send {"type": "message", "text": "..."}')
    text = "".join(
        c
        for c in value.replace("\r\n", "\n")
        if c in _KEPT_CONTROLS or (unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS)
    ).strip()
    if not text:
        raise InvalidMessage("empty", "the message is empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidMessage("too-long", f"a message has at most {MAX_MESSAGE_CHARS} characters")
    return text


def clean_nonce(value: object) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_NONCE_CHARS or not value.isascii() or not value.isprintable():
        raise InvalidMessage("bad-nonce", f"a nonce is up to {MAX_NONCE_CHARS} printable ASCII characters")
    return value


def room_by_slug(slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


def recent_messages(room: Room, limit: int = HISTORY_SIZE) -> list[dict[str, object]]:
    """The last ``limit`` messages of ``room``, oldest first."""
    newest = list(Message.objects.filter(room=room).select_related("author").order_by("-id")[:limit])
    return [message.as_event() for message in reversed(newest)]


def save_message(room: Room, author: AbstractBaseUser, text: str, nonce: str = "") -> tuple[dict[str, object], bool]:
    """Store one message, committed before this returns. Returns its event and whether it is new;
    a repeated nonce from the same author returns the message stored the first time."""
    if nonce:
        existing = Message.objects.filter(author=author, nonce=nonce).select_related("author").first()
        if existing is not None:
            return existing.as_event(), False
    try:
        with transaction.atomic():
            message = Message.objects.create(room=room, author=author, text=text, nonce=nonce)
    except IntegrityError:
        if not nonce:
            raise
        # The same nonce raced in from another connection of the same user.
        return Message.objects.select_related("author").get(author=author, nonce=nonce).as_event(), False
    message.author = author
    return message.as_event(), True


def ensure_demo_rooms() -> list[Room]:
    return [Room.objects.get_or_create(slug=slug, defaults={"title": title})[0] for slug, title in DEMO_ROOMS]
