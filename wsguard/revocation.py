"""When trust ends, open sockets end: model and auth signals turned into control events.

* ``user_logged_out``: the session's sockets (cookie or tickets it minted) close, ``logged-out``;
* a password change (the session auth hash changes): the user's session and ticket sockets close,
  ``password-changed`` (API tokens are not bound to the password and stay);
* a user saved with ``is_active=False``, or deleted: all of the user's sockets close;
* an :class:`~wsguard.models.ApiToken` revoked (``is_active=False``), expired by an edit, or deleted:
  the token's sockets close.

Each becomes one control event (:func:`wsguard.live.publish`) sent once the transaction commits,
so every worker closes its matching sockets (close code 4401) within the listener's latency.
Natural expiry needs no event: the periodic sweep (:func:`wsguard.live.sweep`) closes those.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save

from . import live
from .auth import CREDENTIAL_SESSION, CREDENTIAL_TICKET, session_digest
from .auth.reasons import LiveReason

logger = logging.getLogger("wsguard")

SEEN_ATTR = "_wsguard_seen"


def _publish(event: dict[str, Any], using: str | None = None) -> None:
    def send() -> None:
        try:
            live.publish_from_sync(event)
        except Exception:
            logger.exception("wsguard: publishing a revocation (%s) failed", event.get("kind"))

    transaction.on_commit(send, using=using)


def user_event(user_pk: object, reason: str, credentials: list[str] | None = None, using: str | None = None) -> None:
    _publish({"kind": live.EVENT_USER, "user": str(user_pk), "reason": str(reason), "credentials": credentials}, using)


def session_event(session_key: str, reason: str = LiveReason.LOGGED_OUT, using: str | None = None) -> None:
    _publish({"kind": live.EVENT_SESSION, "session": session_digest(session_key), "reason": str(reason)}, using)


def token_event(token_id: int, reason: str, using: str | None = None) -> None:
    _publish({"kind": live.EVENT_TOKEN, "token": int(token_id), "reason": str(reason)}, using)


def _remember(sender: Any, instance: Any, **kwargs: Any) -> None:
    # What the row held when loaded, so that post_save can tell what changed without a query.
    instance.__dict__[SEEN_ATTR] = (instance.__dict__.get("password"), instance.__dict__.get("is_active"))


def _user_saved(sender: Any, instance: Any, created: bool, using: str, **kwargs: Any) -> None:
    if created:
        _remember(sender, instance)
        return
    old_password, old_active = instance.__dict__.get(SEEN_ATTR, (None, None))
    active = instance.__dict__.get("is_active", True)
    password = instance.__dict__.get("password")
    if active is False and old_active is not False:
        user_event(instance.pk, LiveReason.USER_INACTIVE, using=using)
    elif old_password is not None and password is not None and password != old_password:
        user_event(instance.pk, LiveReason.PASSWORD_CHANGED, [CREDENTIAL_SESSION, CREDENTIAL_TICKET], using=using)
    _remember(sender, instance)


def _user_deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    user_event(instance.pk, LiveReason.USER_DELETED, using=using)


def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if isinstance(key, str) and key:
        session_event(key)


def _token_saved(sender: Any, instance: Any, created: bool, using: str, **kwargs: Any) -> None:
    if not instance.is_active:
        token_event(instance.pk, LiveReason.TOKEN_REVOKED, using=using)
    elif instance.is_expired:
        token_event(instance.pk, LiveReason.TOKEN_EXPIRED, using=using)


def _token_deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    token_event(instance.pk, LiveReason.TOKEN_REVOKED, using=using)


def install() -> None:
    """Connect the receivers (from ``AppConfig.ready``). Idempotent."""
    from .models import ApiToken

    user_model = get_user_model()
    post_init.connect(_remember, sender=user_model, dispatch_uid="wsguard.revocation.remember")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="wsguard.revocation.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="wsguard.revocation.user_deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="wsguard.revocation.logged_out")
    post_save.connect(_token_saved, sender=ApiToken, dispatch_uid="wsguard.revocation.token_saved")
    post_delete.connect(_token_deleted, sender=ApiToken, dispatch_uid="wsguard.revocation.token_deleted")
