"""One-time tickets: minted over same-origin HTTP, redeemed once at the socket handshake.

A ticket is 256 random bits (``secrets.token_urlsafe(32)``). The cache holds only its SHA-256
under :data:`KEY_PREFIX`, with what it is bound to: the user, the session auth hash (a password
change voids it), the minting session, the requesting Origin and an optional path prefix.

Redemption is one atomic cache operation: every redeemer may read the entry, but only the one whose
``cache.add()`` of the ticket's *spent marker* succeeds wins (``SET NX`` on Redis; ``add`` is atomic
on every Django cache backend), and the entry is then deleted. The marker also makes a second
redemption say ``ticket-reused``, and the entry outlives the ticket by :data:`GRACE_SECONDS` so
that a late redemption says ``ticket-expired`` rather than ``auth-invalid``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache.backends.base import BaseCache
from django.utils.crypto import constant_time_compare

from .. import conf
from ..origins import path_under
from . import CREDENTIAL_TICKET, Accepted, Denied, Handshake, Outcome, session_digest, well_formed_secret
from .reasons import AuthReason, LiveReason

KEY_PREFIX = "wsguard:ticket:"
SPENT_PREFIX = "wsguard:ticket-spent:"
GRACE_SECONDS = 300
TICKET_BYTES = 32


def cache() -> BaseCache:
    return conf.shared_cache()


def ticket_ttl() -> int:
    return int(conf.get_settings().raw["TICKET_TTL"])


def _key(ticket: str) -> str:
    return KEY_PREFIX + hashlib.sha256(ticket.encode("ascii")).hexdigest()


def _spent_key(ticket: str) -> str:
    return SPENT_PREFIX + hashlib.sha256(ticket.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a ticket is bound to (stored in the cache under the ticket's hash)."""

    user_pk: str
    auth_hash: str
    session: str | None
    origin: str
    path_prefix: str
    expires_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "u": self.user_pk,
            "h": self.auth_hash,
            "s": self.session,
            "o": self.origin,
            "p": self.path_prefix,
            "x": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: object) -> Grant | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                user_pk=str(data["u"]),
                auth_hash=str(data["h"]),
                session=data["s"] if isinstance(data["s"], str) else None,
                origin=str(data["o"]),
                path_prefix=str(data["p"]),
                expires_at=float(data["x"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def mint(user: Any, *, origin: str, session_key: str | None, path_prefix: str = "") -> tuple[str, int]:
    """A new ticket for ``user`` and the seconds it lives. ``origin`` is a serialised Origin."""
    ttl = ticket_ttl()
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    grant = Grant(
        user_pk=str(user.pk),
        auth_hash=user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else "",
        session=session_digest(session_key) if session_key else None,
        origin=origin,
        path_prefix=path_prefix,
        expires_at=time.time() + ttl,
    )
    cache().set(_key(ticket), grant.as_dict(), timeout=ttl + GRACE_SECONDS)
    return ticket, ttl


def redeem(ticket: str) -> Grant | AuthReason:
    """Spend ``ticket``: its grant, or why not. Exactly one caller ever gets the grant."""
    if not well_formed_secret(ticket):
        return AuthReason.AUTH_INVALID
    store = cache()
    key = _key(ticket)
    data = store.get(key)
    if data is None:
        return AuthReason.TICKET_REUSED if store.get(_spent_key(ticket)) is not None else AuthReason.AUTH_INVALID
    # The atomic step: only one redeemer can create the spent marker (SET NX on Redis). It is
    # created before the entry goes, so whoever then finds no entry finds the marker.
    if not store.add(_spent_key(ticket), 1, timeout=ticket_ttl() + GRACE_SECONDS):
        return AuthReason.TICKET_REUSED
    store.delete(key)
    grant = Grant.from_dict(data)
    if grant is None:
        return AuthReason.AUTH_INVALID
    if grant.expires_at <= time.time():
        return AuthReason.TICKET_EXPIRED
    return grant


def revalidate_grant(user_pk: str, auth_hash: str) -> str | None:
    user = get_user_model()._default_manager.filter(pk=user_pk).first()
    if user is None:
        return LiveReason.USER_DELETED
    if not getattr(user, "is_active", True):
        return LiveReason.USER_INACTIVE
    if hasattr(user, "get_session_auth_hash") and not constant_time_compare(auth_hash, user.get_session_auth_hash()):
        return LiveReason.PASSWORD_CHANGED
    return None


class TicketAuthenticator:
    """A one-time ticket in ``Sec-WebSocket-Protocol`` (``wsguard.ticket.<t>``) or ``?ticket=<t>``."""

    name = CREDENTIAL_TICKET
    explicit = True

    def present(self, handshake: Handshake) -> bool:
        return bool(handshake.tickets)

    def authenticate(self, handshake: Handshake) -> Outcome:
        if len(handshake.tickets) != 1:
            return Denied(AuthReason.AUTH_AMBIGUOUS)
        grant = redeem(handshake.tickets[0])
        if not isinstance(grant, Grant):
            return Denied(grant)
        # The ticket is spent whatever follows: a stolen one cannot be retried from elsewhere.
        if handshake.origin is None or not constant_time_compare(grant.origin, handshake.origin):
            return Denied(AuthReason.TICKET_ORIGIN)
        if not path_under(grant.path_prefix, handshake.path):
            return Denied(AuthReason.TICKET_PATH)
        from django.conf import settings

        cookie = handshake.cookies.get(settings.SESSION_COOKIE_NAME)
        if cookie is not None and grant.session is not None and session_digest(cookie) != grant.session:
            # The browser presenting the ticket is logged in as someone (or some session) else.
            return Denied(AuthReason.TICKET_USER)
        user = get_user_model()._default_manager.filter(pk=grant.user_pk).first()
        if user is None:
            return Denied(AuthReason.AUTH_INVALID)
        if not getattr(user, "is_active", True):
            return Denied(AuthReason.USER_INACTIVE)
        if hasattr(user, "get_session_auth_hash") and not constant_time_compare(
            grant.auth_hash, user.get_session_auth_hash()
        ):
            return Denied(AuthReason.AUTH_INVALID)
        user_pk, auth_hash = grant.user_pk, grant.auth_hash
        return Accepted(
            user=user,
            credential=CREDENTIAL_TICKET,
            session=grant.session,
            revalidate=lambda: revalidate_grant(user_pk, auth_hash),
        )
