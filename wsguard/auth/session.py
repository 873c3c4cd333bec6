"""The session authenticator: Django's own session and user resolution, as on an HTTP request.

The backend named in the session must still be configured, the session auth hash must verify
(current ``SECRET_KEY`` or a fallback), and the user must be active. Unlike Django's
``get_user`` nothing is written back (no ``flush``, no ``cycle_key``): a handshake only reads.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare

from . import CREDENTIAL_SESSION, Accepted, Denied, Handshake, Outcome, session_digest
from .reasons import AuthReason, LiveReason


def _hash_verifies(user: Any, session_hash: object) -> bool:
    if not hasattr(user, "get_session_auth_hash"):
        return True
    if not isinstance(session_hash, str) or not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
    if not callable(fallbacks):
        return False
    return any(constant_time_compare(session_hash, h) for h in fallbacks())


def _inactive_user_exists(user_id: str | int) -> bool:
    return get_user_model()._default_manager.filter(pk=user_id, is_active=False).exists()


def resolve(session: Any) -> tuple[Any, AuthReason | None]:
    """``(user, None)`` for a valid logged-in session, ``(None, None)`` for an anonymous one and
    ``(None, reason)`` for one that names a user who may no longer use it."""
    try:
        raw_id = session[SESSION_KEY]
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None, None
    try:
        user_id = get_user_model()._meta.pk.to_python(raw_id)
    except ValidationError:
        return None, AuthReason.AUTH_INVALID
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None, AuthReason.AUTH_INVALID
    user = load_backend(backend_path).get_user(user_id)
    if user is None:
        # ModelBackend answers None for inactive users; say which, it is in the docs.
        return None, AuthReason.USER_INACTIVE if _inactive_user_exists(user_id) else AuthReason.AUTH_INVALID
    if not _hash_verifies(user, session.get(HASH_SESSION_KEY)):
        return None, AuthReason.AUTH_INVALID
    if not getattr(user, "is_active", True):
        return None, AuthReason.USER_INACTIVE
    return user, None


def revalidate_session(session_key: str, user_pk: object) -> str | None:
    """Still the same user on that session, and still allowed in? ``None`` or a reason code."""
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user, reason = resolve(store)
    if user is None:
        return LiveReason.USER_INACTIVE if reason == AuthReason.USER_INACTIVE else LiveReason.SESSION_ENDED
    if str(user.pk) != str(user_pk):
        return LiveReason.SESSION_ENDED
    return None


class SessionAuthenticator:
    """The logged-in user of the session cookie (Channels' ``SessionMiddleware`` must run above)."""

    name = CREDENTIAL_SESSION
    explicit = False

    def present(self, handshake: Handshake) -> bool:
        return settings.SESSION_COOKIE_NAME in handshake.cookies and "session" in handshake.scope

    def authenticate(self, handshake: Handshake) -> Outcome:
        session = handshake.scope["session"]
        user, reason = resolve(session)
        if reason is not None:
            return Denied(reason)
        if user is None:
            return None
        key = session.session_key
        try:
            expires_at: float | None = session.get_expiry_date().timestamp()
        except Exception:
            expires_at = None
        if expires_at is not None:
            expires_at = max(expires_at, time.time())
        user_pk = user.pk
        return Accepted(
            user=user,
            credential=CREDENTIAL_SESSION,
            session=session_digest(key) if key else None,
            expires_at=expires_at,
            revalidate=(lambda: revalidate_session(key, user_pk)) if key else None,
        )
