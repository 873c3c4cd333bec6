"""The demo chat's data: rooms and their messages. Nothing here knows about wsguard."""

from __future__ import annotations

from django.conf import settings
from django.db import models

MAX_MESSAGE_CHARS = 2000
MAX_NONCE_CHARS = 64


class Room(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    title = models.CharField(max_length=100)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages")
    text = models.CharField(max_length=MAX_MESSAGE_CHARS)
    # Chosen by the sending page, so that a message re-sent after a dropped connection is stored once.
    nonce = models.CharField(max_length=MAX_NONCE_CHARS, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "nonce"], condition=~models.Q(nonce=""), name="chat_message_author_nonce"
            ),
        ]
        indexes = [models.Index(fields=["room", "-id"], name="chat_message_room_recent")]

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.text[:40]}"

    def as_event(self) -> dict[str, object]:
        """The JSON form sent to pages (plain text: pages render it with textContent)."""
        return {
            "id": self.id,
            "author": self.author.get_username(),
            "text": self.text,
            "at": self.created_at.isoformat(),
        }
