"""Reason codes for authentication and limits, with the close code each one is sent with.

Pure: no Django imports, so :mod:`wsguard.rejections` can merge :data:`CLOSE_CODES` into its own.
"""

from __future__ import annotations

from enum import StrEnum

CLOSE_CREDENTIALS = 4401
CLOSE_RATE = 4429
CLOSE_TOO_BIG = 1009


class AuthReason(StrEnum):
    """Why a handshake was refused by the authentication step (close 4401) or a limit (4429)."""

    AUTH_REQUIRED = "auth-required"
    AUTH_INVALID = "auth-invalid"
    AUTH_AMBIGUOUS = "auth-ambiguous"
    AUTH_NOT_ALLOWED = "auth-not-allowed"
    AUTH_ERROR = "auth-error"
    SUBPROTOCOL_MISSING = "subprotocol-missing"
    TOKEN_REQUIRED = "token-required"  # noqa: S105 - a reason code, not a secret
    USER_INACTIVE = "user-inactive"
    TICKET_EXPIRED = "ticket-expired"
    TICKET_REUSED = "ticket-reused"
    TICKET_ORIGIN = "ticket-origin"
    TICKET_USER = "ticket-user"
    TICKET_PATH = "ticket-path"
    TOKEN_REVOKED = "token-revoked"  # noqa: S105
    TOKEN_EXPIRED = "token-expired"  # noqa: S105
    RATE_LIMITED = "rate-limited"
    TOO_MANY_SOCKETS = "too-many-sockets"


class LiveReason(StrEnum):
    """Why wsguard closed an already-accepted socket."""

    LOGGED_OUT = "logged-out"
    PASSWORD_CHANGED = "password-changed"  # noqa: S105
    USER_INACTIVE = "user-inactive"
    USER_DELETED = "user-deleted"
    TOKEN_REVOKED = "token-revoked"  # noqa: S105
    TOKEN_EXPIRED = "token-expired"  # noqa: S105
    SESSION_ENDED = "session-ended"
    REVALIDATION_FAILED = "revalidation-failed"
    MESSAGE_TOO_BIG = "message-too-big"
    MESSAGE_RATE = "message-rate"


CLOSE_CODES: dict[str, int] = {
    **{reason: CLOSE_CREDENTIALS for reason in AuthReason},
    AuthReason.RATE_LIMITED: CLOSE_RATE,
    AuthReason.TOO_MANY_SOCKETS: CLOSE_RATE,
}

LIVE_CLOSE_CODES: dict[str, int] = {
    **{reason: CLOSE_CREDENTIALS for reason in LiveReason},
    LiveReason.MESSAGE_TOO_BIG: CLOSE_TOO_BIG,
    LiveReason.MESSAGE_RATE: CLOSE_RATE,
}
