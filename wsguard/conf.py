"""The one reader of ``settings.WSGUARD``.

Defaults live in :data:`DEFAULTS`; unknown keys and ill-typed values are refused. The parsed
:class:`WsguardSettings` is cached and reset on Django's ``setting_changed`` signal, so
``override_settings(WSGUARD=...)`` works in tests. Nothing here writes to ``django.conf.settings``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .origins import Pattern, PatternError, parse_pattern

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

SETTING_NAME = "WSGUARD"
MISSING_ORIGIN_CHOICES = ("deny", "token", "allow")

DEFAULTS: dict[str, Any] = {
    # Origin patterns trusted on every websocket route (docs/origins.md for the grammar).
    "ALLOWED_ORIGINS": [],
    # Trust an Origin equal to the validated Host (scheme from the connection).
    "SAME_ORIGIN": True,
    # What a handshake without any Origin header gets: "deny", "token" (API token only) or "allow".
    "MISSING_ORIGIN": "deny",
    # Log and signal every decision but let denied handshakes through (for roll-outs).
    "REPORT_ONLY": False,
    # Denial log lines per second per process, and the burst allowed above that.
    "LOG_RATE": 10.0,
    "LOG_BURST": 50,
    # Authentication (docs/auth.md): authenticators tried in order, dotted paths.
    "AUTHENTICATORS": [
        "wsguard.auth.session.SessionAuthenticator",
        "wsguard.auth.tickets.TicketAuthenticator",
        "wsguard.auth.tokens.TokenAuthenticator",
    ],
    # Seconds a one-time ticket can be redeemed after it is minted.
    "TICKET_TTL": 30,
    # Seconds between re-validations of every open socket's credential.
    "REVALIDATE_SECONDS": 1800,
    # Largest websocket message accepted (bytes); larger closes the socket with 1009.
    "MAX_MESSAGE_BYTES": 65536,
    # Messages per connection ("N/second|minute|hour|day", None for no limit); over it closes with 4429.
    "MESSAGE_RATE": "100/minute",
    # Concurrent sockets one user may hold across all workers (None for no cap).
    "MAX_SOCKETS_PER_USER": 20,
    # Handshakes per client address across all workers ("N/unit", None for no limit); over it is 4429.
    "HANDSHAKE_RATE": "600/minute",
    # The Django cache alias for tickets, rate limits and socket caps (shared across workers).
    "CACHE_ALIAS": "default",
    # Seconds between each worker's reads of the policy version key (a fallback for a lost broadcast).
    "POLICY_POLL_SECONDS": 1.0,
    # Aggregate denials into HandshakeRejection rows (one per origin, reason and path).
    "AUDIT": True,
    # Seconds between the audit's batched writes in each process.
    "AUDIT_FLUSH_SECONDS": 5.0,
    # Distinct (origin, reason, path) keys held in memory between writes; more are counted under "(overflow)".
    "AUDIT_MAX_KEYS": 10000,
    # Audit rows not seen for this many days are deleted (automatically, and by wsguard_origins purge-audit).
    "AUDIT_RETENTION_DAYS": 30,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem: the check id it is reported under, a message and a hint."""

    id: str
    message: str
    hint: str

    def as_error(self) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{SETTING_NAME}: {self.message} {self.hint}")


@dataclass(frozen=True, slots=True)
class WsguardSettings:
    allowed_origins: tuple[Pattern, ...]
    same_origin: bool
    missing_origin: str
    report_only: bool
    log_rate: float
    log_burst: int
    raw: dict[str, Any]
    # Parsed once here, not per connection: (count, seconds) or None for no limit.
    message_rate: tuple[int, int] | None = None
    handshake_rate: tuple[int, int] | None = None


def _check_bool(key: str) -> Callable[[Any], Problem | None]:
    def check(value: Any) -> Problem | None:
        if isinstance(value, bool):
            return None
        return Problem("wsguard.E002", f"{key} must be True or False, not {value!r}.", f'Write "{key}": True.')

    return check


def _check_positive_number(key: str, integer: bool = False) -> Callable[[Any], Problem | None]:
    def check(value: Any) -> Problem | None:
        number = isinstance(value, int) or (not integer and isinstance(value, float))
        if number and not isinstance(value, bool) and 0 < value < math.inf:
            return None
        what = "a positive whole number" if integer else "a positive number"
        return Problem("wsguard.E002", f"{key} must be {what}, not {value!r}.", f"Remove {key} to use the default.")

    return check


def _check_missing_origin(value: Any) -> Problem | None:
    if isinstance(value, str) and value in MISSING_ORIGIN_CHOICES:
        return None
    return Problem(
        "wsguard.E003",
        f"MISSING_ORIGIN must be one of {', '.join(map(repr, MISSING_ORIGIN_CHOICES))}, not {value!r}.",
        'Use "deny" unless non-browser clients connect; then "token" admits them only with an API token.',
    )


RATE_UNITS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(value: Any) -> tuple[int, int] | None:
    """``"100/minute"`` -> ``(100, 60)`` (count, seconds); ``None`` -> no limit. Raises ValueError."""
    if value is None:
        return None
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValueError(value)
    count, unit = (part.strip() for part in value.split("/"))
    seconds = RATE_UNITS.get(unit.removesuffix("s")) or {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(unit)
    if not count.isdigit() or int(count) <= 0 or seconds is None:
        raise ValueError(value)
    return int(count), seconds


def _check_rate(key: str) -> Callable[[Any], Problem | None]:
    def check(value: Any) -> Problem | None:
        try:
            parse_rate(value)
        except ValueError:
            return Problem(
                "wsguard.E020",
                f'{key} must be a rate such as "100/minute" (per second, minute, hour or day) or None, not {value!r}.',
                f'Write "{key}": "100/minute", or None for no limit.',
            )
        return None

    return check


def _check_optional_positive(key: str) -> Callable[[Any], Problem | None]:
    positive = _check_positive_number(key, integer=True)

    def check(value: Any) -> Problem | None:
        return None if value is None else positive(value)

    return check


def _check_authenticators(value: Any) -> Problem | None:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(item, str) and "." in item for item in value)
        and len(set(value)) == len(value)
    ):
        return None
    return Problem(
        "wsguard.E021",
        f"AUTHENTICATORS must be a non-empty list of distinct dotted paths, not {value!r}.",
        'Remove AUTHENTICATORS to use the defaults, or list e.g. "wsguard.auth.tickets.TicketAuthenticator".',
    )


def _check_cache_alias(value: Any) -> Problem | None:
    if isinstance(value, str) and value:
        return None
    return Problem(
        "wsguard.E022", f"CACHE_ALIAS must be a cache alias, not {value!r}.", 'Write "CACHE_ALIAS": "default".'
    )


_VALUE_CHECKS: dict[str, Callable[[Any], Problem | None]] = {
    "SAME_ORIGIN": _check_bool("SAME_ORIGIN"),
    "REPORT_ONLY": _check_bool("REPORT_ONLY"),
    "MISSING_ORIGIN": _check_missing_origin,
    "LOG_RATE": _check_positive_number("LOG_RATE"),
    "LOG_BURST": _check_positive_number("LOG_BURST", integer=True),
    "AUTHENTICATORS": _check_authenticators,
    "TICKET_TTL": _check_positive_number("TICKET_TTL", integer=True),
    "REVALIDATE_SECONDS": _check_positive_number("REVALIDATE_SECONDS"),
    "MAX_MESSAGE_BYTES": _check_positive_number("MAX_MESSAGE_BYTES", integer=True),
    "MESSAGE_RATE": _check_rate("MESSAGE_RATE"),
    "MAX_SOCKETS_PER_USER": _check_optional_positive("MAX_SOCKETS_PER_USER"),
    "HANDSHAKE_RATE": _check_rate("HANDSHAKE_RATE"),
    "CACHE_ALIAS": _check_cache_alias,
    "POLICY_POLL_SECONDS": _check_positive_number("POLICY_POLL_SECONDS"),
    "AUDIT": _check_bool("AUDIT"),
    "AUDIT_FLUSH_SECONDS": _check_positive_number("AUDIT_FLUSH_SECONDS"),
    "AUDIT_MAX_KEYS": _check_positive_number("AUDIT_MAX_KEYS", integer=True),
    "AUDIT_RETENTION_DAYS": _check_positive_number("AUDIT_RETENTION_DAYS", integer=True),
}


def parse_patterns(value: Any, where: str = "ALLOWED_ORIGINS") -> tuple[tuple[Pattern, ...], list[Problem]]:
    """Compile a list of origin patterns, collecting one :class:`Problem` per bad entry."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        return (), [
            Problem(
                "wsguard.E001",
                f"{where} must be a list of origin patterns, not {type(value).__name__} {value!r}.",
                f'Write a list: "{where}": ["https://example.com"].',
            )
        ]
    patterns: list[Pattern] = []
    problems: list[Problem] = []
    for item in value:
        try:
            patterns.append(parse_pattern(item))
        except PatternError as exc:
            problems.append(Problem("wsguard.E001", f"{where} entry {exc.pattern!r}: {exc.message}", exc.hint))
    return tuple(patterns), problems


def collect_problems(raw: Any) -> list[Problem]:
    """Every problem in a raw ``WSGUARD`` value (used by the system checks)."""
    return _parse(raw)[1]


def _parse(raw: Any) -> tuple[WsguardSettings | None, list[Problem]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [
            Problem(
                "wsguard.E002",
                f"{SETTING_NAME} must be a dict, not {type(raw).__name__}.",
                f'Write {SETTING_NAME} = {{"ALLOWED_ORIGINS": ["https://example.com"]}}.',
            )
        ]
    problems: list[Problem] = []
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)
    for key in unknown:
        import difflib

        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}."
        problems.append(Problem("wsguard.E002", f"unknown key {key!r}.", hint))
    merged = {**DEFAULTS, **raw}
    for key, check in _VALUE_CHECKS.items():
        problem = check(merged[key])
        if problem is not None:
            problems.append(problem)
    patterns, pattern_problems = parse_patterns(merged["ALLOWED_ORIGINS"])
    problems.extend(pattern_problems)
    if problems:
        return None, problems
    return (
        WsguardSettings(
            allowed_origins=patterns,
            same_origin=merged["SAME_ORIGIN"],
            missing_origin=merged["MISSING_ORIGIN"],
            report_only=merged["REPORT_ONLY"],
            log_rate=float(merged["LOG_RATE"]),
            log_burst=int(merged["LOG_BURST"]),
            raw=merged,
            message_rate=parse_rate(merged["MESSAGE_RATE"]),
            handshake_rate=parse_rate(merged["HANDSHAKE_RATE"]),
        ),
        [],
    )


_cached: WsguardSettings | None = None


def get_settings() -> WsguardSettings:
    """The validated settings; raises ImproperlyConfigured naming the first problem and its fix."""
    global _cached
    if _cached is None:
        parsed, problems = _parse(getattr(settings, SETTING_NAME, None))
        if parsed is None:
            raise problems[0].as_error()
        _cached = parsed
    return _cached


def shared_cache() -> BaseCache:
    """The cache wsguard keeps its shared state in (tickets, policy version, rate limits, socket
    slots): ``CACHES[WSGUARD["CACHE_ALIAS"]]``."""
    from django.core.cache import caches

    return caches[get_settings().raw["CACHE_ALIAS"]]


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> Callable[[], None]:
    """Register a function to call whenever the wsguard settings (or ALLOWED_HOSTS) change."""
    _reset_hooks.append(hook)
    return hook


def reset() -> None:
    global _cached
    _cached = None
    for hook in _reset_hooks:
        hook()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING_NAME, "ALLOWED_HOSTS", "DEBUG", "SECURE_PROXY_SSL_HEADER", "USE_X_FORWARDED_HOST"):
        reset()


setting_changed.connect(_setting_changed, dispatch_uid="wsguard.conf.reset")
