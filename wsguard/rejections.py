"""Denials: the close codes, the record of one denial, and its rate-limited log line and signal.

Log lines carry the reason code, the path and the client address, and the Origin as sent (not a
secret: a page cannot choose it, and an attacker already knows it), escaped and truncated. They
never carry cookies, query strings, tickets or tokens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .origins import Reason

logger = logging.getLogger("wsguard")

CLOSE_ORIGIN = 4403

CLOSE_CODES: dict[str, int] = {
    Reason.ORIGIN_MISSING: CLOSE_ORIGIN,
    Reason.ORIGIN_MALFORMED: CLOSE_ORIGIN,
    Reason.ORIGIN_OPAQUE: CLOSE_ORIGIN,
    Reason.ORIGIN_UNTRUSTED: CLOSE_ORIGIN,
    Reason.HOST_UNTRUSTED: CLOSE_ORIGIN,
}
# The authentication step's and the limits' reasons (wsguard/auth/reasons.py, docs/auth.md).
from .auth.reasons import CLOSE_CODES as _AUTH_CLOSE_CODES  # noqa: E402
from .auth.reasons import CLOSE_CREDENTIALS, CLOSE_RATE, CLOSE_TOO_BIG  # noqa: E402,F401 - one definition

CLOSE_CODES.update(_AUTH_CLOSE_CODES)
MAX_LOGGED_CHARS = 200


def printable(value: bytes | str | None, limit: int = MAX_LOGGED_CHARS) -> str | None:
    """A log-safe rendering: escaped non-printables (no forged log lines), bounded length."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("latin-1")
    clipped = value[:limit]
    rendered = clipped.encode("ascii", "backslashreplace").decode("ascii")
    rendered = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in rendered)
    return rendered + ("…" if len(value) > limit else "")


def client_address(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    if isinstance(client, (list, tuple)) and client and isinstance(client[0], str):
        return printable(client[0], 64)
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """One denied handshake, as logged, signalled and audited."""

    reason: str
    close_code: int
    path: str
    client: str | None
    origin: str | None
    report_only: bool = False

    def log_message(self) -> str:
        verdict = "would deny (report-only)" if self.report_only else "denied"
        origin = "-" if self.origin is None else repr(self.origin)
        return (
            f"wsguard {verdict} websocket handshake: reason={self.reason} path={self.path!r} "
            f"client={self.client or '-'} origin={origin}"
        )


class RateLimitedLog:
    """A token bucket in front of the ``wsguard`` logger, so a flood of forged handshakes cannot
    fill a disk. Lines over the budget are counted and the count is reported on the next line."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def reconfigure(self, rate: float, burst: int) -> None:
        with self._lock:
            self.rate, self.burst = rate, burst
            self._tokens = min(self._tokens, float(burst))

    def emit(self, level: int, message: str, extra: dict) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0:
                self._suppressed += 1
                return False
            self._tokens -= 1.0
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message = f"{message} ({suppressed} similar lines suppressed by the rate limit)"
        logger.log(level, message, extra={**extra, "wsguard_suppressed": suppressed})
        return True

    @property
    def suppressed(self) -> int:
        return self._suppressed


_log: RateLimitedLog | None = None


def _forget_log_budget() -> None:
    """A settings change starts a fresh log budget (and makes tests independent of each other)."""
    global _log
    _log = None


def rate_limited_log() -> RateLimitedLog:
    global _log
    from . import conf

    wsguard = conf.get_settings()
    if _log is None:
        _log = RateLimitedLog(wsguard.log_rate, wsguard.log_burst)
    elif (_log.rate, _log.burst) != (wsguard.log_rate, wsguard.log_burst):
        _log.reconfigure(wsguard.log_rate, wsguard.log_burst)
    return _log


def report(rejection: Rejection, sender: object) -> None:
    """Log (rate-limited) and signal one denial. Never raises: a broken receiver is logged."""
    from .signals import handshake_rejected

    rate_limited_log().emit(
        logging.WARNING,
        rejection.log_message(),
        {
            "wsguard_reason": rejection.reason,
            "wsguard_path": rejection.path,
            "wsguard_client": rejection.client,
            "wsguard_report_only": rejection.report_only,
        },
    )
    for receiver, result in handshake_rejected.send_robust(sender=sender, rejection=rejection):
        if isinstance(result, Exception):
            logger.error("wsguard: handshake_rejected receiver %r failed: %r", receiver, result)


def _register_reset() -> None:
    from . import conf

    conf.on_reset(_forget_log_budget)


_register_reset()
