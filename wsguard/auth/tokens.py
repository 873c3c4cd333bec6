"""API tokens for non-browser clients.

A token reads ``wsg_<prefix>_<secret>``: the prefix (8 hex characters) is public and indexed, the
secret is 256 random bits of which only a SHA-256 is stored. A fast hash is the right one here: the
secret is random, not a password, so there is nothing for a slow hash to protect against, and the
comparison is constant-time. ``last_used_at`` is written at most once a minute per token.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import CREDENTIAL_TOKEN, Accepted, Denied, Handshake, Outcome, well_formed_secret
from .reasons import AuthReason, LiveReason

TOKEN_PREFIX = "wsg"  # noqa: S105 - the literal that starts every token
PREFIX_BYTES = 4
SECRET_BYTES = 32
LAST_USED_EVERY = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(f"wsguard.token:{secret}".encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != PREFIX_BYTES * 2 or not all(c in "0123456789abcdef" for c in prefix):
        return None
    if not well_formed_secret(secret):
        return None
    return prefix, secret


def create_token(user: Any, *, name: str = "", expires_at: datetime | None = None) -> tuple[Any, str]:
    """Create an :class:`~wsguard.models.ApiToken`; returns it and the token text (shown once)."""
    from ..models import ApiToken

    for _ in range(5):
        prefix = secrets.token_hex(PREFIX_BYTES)
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(SECRET_BYTES)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=prefix, secret_hash=hash_secret(secret), expires_at=expires_at
    )
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def check_token(text: str) -> tuple[Any, AuthReason | None]:
    """The token row for ``text`` (user loaded in the same query) and why it may not be used."""
    from ..models import ApiToken

    parsed = parse_token(text)
    if parsed is None:
        return None, AuthReason.AUTH_INVALID
    prefix, secret = parsed
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not constant_time_compare(hash_secret(secret), token.secret_hash):
        return None, AuthReason.AUTH_INVALID
    if not token.is_active:
        return token, AuthReason.TOKEN_REVOKED
    if token.is_expired:
        return token, AuthReason.TOKEN_EXPIRED
    if not getattr(token.user, "is_active", True):
        return token, AuthReason.USER_INACTIVE
    return token, None


def touch(token: Any) -> None:
    """Record a use, at most once per :data:`LAST_USED_EVERY` (one conditional UPDATE)."""
    from ..models import ApiToken

    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
    ).update(last_used_at=now)
    token.last_used_at = now


def revalidate_token(token_id: int) -> str | None:
    from ..models import ApiToken

    token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
    if token is None or not token.is_active:
        return LiveReason.TOKEN_REVOKED
    if token.is_expired:
        return LiveReason.TOKEN_EXPIRED
    if not getattr(token.user, "is_active", True):
        return LiveReason.USER_INACTIVE
    return None


class TokenAuthenticator:
    """``Authorization: Bearer <token>`` or ``wsguard.bearer.<token>`` in ``Sec-WebSocket-Protocol``."""

    name = CREDENTIAL_TOKEN
    explicit = True

    def present(self, handshake: Handshake) -> bool:
        return bool(handshake.bearers)

    def authenticate(self, handshake: Handshake) -> Outcome:
        if len(handshake.bearers) != 1:
            return Denied(AuthReason.AUTH_AMBIGUOUS)
        token, reason = check_token(handshake.bearers[0])
        if reason is not None:
            return Denied(reason)
        touch(token)
        token_id = int(token.pk)
        return Accepted(
            user=token.user,
            credential=CREDENTIAL_TOKEN,
            token_id=token_id,
            expires_at=token.expires_at.timestamp() if token.expires_at is not None else None,
            revalidate=lambda: revalidate_token(token_id),
        )
