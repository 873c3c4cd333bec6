"""From trust sources to a decision about one handshake.

A :class:`PolicySnapshot` is the compiled, immutable policy a process enforces: the matcher built
from the settings patterns and the admin-managed :class:`AdminRow` s in force (compiled here,
loaded from the database by :mod:`wsguard.sync`), the same-origin and missing-origin rules and the
validated ``ALLOWED_HOSTS``. :func:`evaluate` applies a snapshot to the facts of one
handshake (:class:`HandshakeFacts`, gathered from the ASGI headers in one pass) and returns a
:class:`Decision`. Nothing here touches the database or raises on hostile input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http.request import validate_host

from . import conf
from .origins import (
    Origin,
    OriginMatcher,
    Pattern,
    PatternError,
    Reason,
    Rule,
    parse_host_header,
    parse_origin,
    parse_pattern,
)

logger = logging.getLogger("wsguard")

HEADER_ORIGIN = b"origin"
HEADER_HOST = b"host"
HEADER_FORWARDED_HOST = b"x-forwarded-host"
# Django's own default when DEBUG is on and ALLOWED_HOSTS is empty (django.http.request).
DEBUG_ALLOWED_HOSTS = (".localhost", "127.0.0.1", "[::1]")

TRUSTED_BY_SAME_ORIGIN = "same-origin"
TRUSTED_BY_MISSING_ALLOW = "missing-origin:allow"
TRUSTED_BY_MISSING_TOKEN = "missing-origin:token"  # noqa: S105 - a label, not a secret
ADMIN_SOURCE_PREFIX = "admin:"


@dataclass(frozen=True, slots=True)
class HandshakeFacts:
    """What the guard needs from one handshake's headers, collected in a single pass."""

    origins: tuple[bytes, ...]
    hosts: tuple[bytes, ...]
    forwarded_hosts: tuple[bytes, ...]
    proxy_ssl_values: tuple[bytes, ...]
    connection_secure: bool
    path: str

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], proxy_ssl_header: bytes | None = None) -> HandshakeFacts:
        origins: list[bytes] = []
        hosts: list[bytes] = []
        forwarded: list[bytes] = []
        proxy: list[bytes] = []
        headers = scope.get("headers") or ()
        for item in headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                continue
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                continue
            name = name.lower()
            if name == HEADER_ORIGIN:
                origins.append(value)
            elif name == HEADER_HOST:
                hosts.append(value)
            elif name == HEADER_FORWARDED_HOST:
                forwarded.append(value)
            elif proxy_ssl_header is not None and name == proxy_ssl_header:
                proxy.append(value)
        path = scope.get("path")
        return cls(
            origins=tuple(origins),
            hosts=tuple(hosts),
            forwarded_hosts=tuple(forwarded),
            proxy_ssl_values=tuple(proxy),
            connection_secure=scope.get("scheme") in ("wss", "https"),
            path=path if isinstance(path, str) else "",
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one handshake. ``reason`` is None when the handshake is allowed."""

    reason: Reason | None
    origin: Origin | None = None
    trusted_by: str | None = None
    host: str | None = None
    token_only: bool = False

    @property
    def allowed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class PolicySnapshot:
    """One process's compiled policy; replaced whole, never mutated."""

    matcher: OriginMatcher
    same_origin: bool
    missing_origin: str
    report_only: bool
    allowed_hosts: tuple[str, ...]
    proxy_ssl_header: bytes | None
    proxy_ssl_value: bytes | None
    use_forwarded_host: bool
    version: str = "settings"
    sources: tuple[str, ...] = field(default=("settings",))
    # Unix time at which the earliest admin row in this snapshot expires (None: none expires).
    # The snapshot is recompiled then, without any write (wsguard.sync).
    next_expiry: float | None = None
    # How many admin rows it holds; None when it was built from the settings alone.
    admin_rows: int | None = None

    def with_matcher(self, matcher: OriginMatcher, *, version: str) -> PolicySnapshot:
        return dataclasses.replace(self, matcher=matcher, version=version)


def allowed_hosts() -> tuple[str, ...]:
    hosts = tuple(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        return DEBUG_ALLOWED_HOSTS
    return hosts


def _proxy_ssl() -> tuple[bytes | None, bytes | None]:
    configured = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not configured:
        return None, None
    meta_name, value = configured
    # Django names it in META form (HTTP_X_FORWARDED_PROTO); ASGI carries x-forwarded-proto.
    name = meta_name.removeprefix("HTTP_").lower().replace("_", "-")
    return name.encode("latin-1"), value.encode("latin-1")


def settings_rules() -> tuple[Rule, ...]:
    return tuple(Rule(pattern, source="settings") for pattern in conf.get_settings().allowed_origins)


def build_snapshot(
    extra_rules: Iterable[Rule] = (),
    *,
    version: str = "settings",
    next_expiry: float | None = None,
    admin_rows: int | None = None,
) -> PolicySnapshot:
    """Compile the settings (plus ``extra_rules``) into a snapshot. Raises ImproperlyConfigured."""
    wsguard = conf.get_settings()
    header, value = _proxy_ssl()
    return PolicySnapshot(
        matcher=OriginMatcher.compile((*settings_rules(), *extra_rules)),
        same_origin=wsguard.same_origin,
        missing_origin=wsguard.missing_origin,
        report_only=wsguard.report_only,
        allowed_hosts=allowed_hosts(),
        proxy_ssl_header=header,
        proxy_ssl_value=value,
        use_forwarded_host=bool(getattr(settings, "USE_X_FORWARDED_HOST", False)),
        version=version,
        sources=("settings", "admin") if admin_rows is not None else ("settings",),
        next_expiry=next_expiry,
        admin_rows=admin_rows,
    )


# --- admin-managed rows -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminRow:
    """One in-force ``TrustedOrigin`` row as the policy needs it (no model instance, no queries)."""

    pk: int
    origin: str
    path_prefix: str = ""
    expires_at: float | None = None  # Unix time

    @property
    def source(self) -> str:
        return f"{ADMIN_SOURCE_PREFIX}{self.pk}"

    def in_force(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


class PatternCache:
    """Parsed patterns by their stored (already normalised) text, so that recompiling a policy of
    many rows after one change parses only the new ones. Holds only what the last compile used."""

    def __init__(self) -> None:
        self._patterns: dict[str, Pattern | None] = {}

    def __len__(self) -> int:
        return len(self._patterns)

    def compile(self, rows: Iterable[AdminRow], now: float) -> tuple[tuple[Rule, ...], float | None, list[AdminRow]]:
        """Rules for the rows in force at ``now``, the earliest future expiry, and the rows that
        were refused (malformed, or the match-everything pattern, which only settings may hold)."""
        old = self._patterns
        fresh: dict[str, Pattern | None] = {}
        rules: list[Rule] = []
        refused: list[AdminRow] = []
        next_expiry: float | None = None
        for row in rows:
            if not row.in_force(now):
                continue
            if row.origin in fresh:
                pattern = fresh[row.origin]
            elif row.origin in old:
                pattern = fresh[row.origin] = old[row.origin]
            else:
                try:
                    pattern = parse_pattern(row.origin)
                except PatternError:
                    pattern = None
                if pattern is not None and pattern.matches_everything:
                    pattern = None
                fresh[row.origin] = pattern
            if pattern is None:
                refused.append(row)
                continue
            rules.append(Rule(pattern, path_prefix=row.path_prefix, source=row.source))
            if row.expires_at is not None and (next_expiry is None or row.expires_at < next_expiry):
                next_expiry = row.expires_at
        self._patterns = fresh
        return tuple(rules), next_expiry, refused


def build_admin_snapshot(
    rows: Sequence[AdminRow], *, version: str, now: float | None = None, cache: PatternCache | None = None
) -> PolicySnapshot:
    """The settings plus the ``rows`` in force at ``now``. Rows that cannot be trusted are left
    out (fail closed) and logged; they can only appear through writes that bypass the model."""
    now = time.time() if now is None else now
    rules, next_expiry, refused = (cache if cache is not None else PatternCache()).compile(rows, now)
    for row in refused[:10]:
        logger.error(
            "wsguard: trusted origin #%s %r is not a pattern the admin may trust; it is ignored", row.pk, row.origin
        )
    return build_snapshot(rules, version=version, next_expiry=next_expiry, admin_rows=len(rules))


_snapshot: PolicySnapshot | None = None
_first_use_hooks: list[Callable[[], None]] = []
_hooked_loop: object | None = None


def on_first_use(hook: Callable[[], None]) -> Callable[[], None]:
    """Register a cheap, non-blocking function to call the first time :func:`get_snapshot` runs in
    each event loop (in a server: the process's first handshake). It must not touch the database
    itself; :mod:`wsguard.sync` uses it to start the listener and, if no rows are loaded yet, to
    schedule a background load."""
    if hook not in _first_use_hooks:
        _first_use_hooks.append(hook)
    return hook


def get_snapshot() -> PolicySnapshot:
    """The snapshot in force in this process. Never touches the database: until one is installed
    it is the settings alone (fail closed)."""
    global _snapshot, _hooked_loop
    snapshot = _snapshot
    if snapshot is None:
        snapshot = _snapshot = build_snapshot()
    if _first_use_hooks:
        loop = asyncio._get_running_loop()
        if loop is not None and loop is not _hooked_loop:
            _hooked_loop = loop
            for hook in list(_first_use_hooks):
                try:
                    hook()
                except Exception:
                    logger.exception("wsguard: policy first-use hook %r failed", hook)
    return snapshot


def installed_snapshot() -> PolicySnapshot | None:
    """The installed snapshot, or None when none has been built or installed yet."""
    return _snapshot


def install_snapshot(snapshot: PolicySnapshot) -> None:
    """Swap in a new snapshot atomically (a single reference assignment)."""
    global _snapshot
    _snapshot = snapshot


@conf.on_reset
def _forget_snapshot() -> None:
    global _snapshot
    _snapshot = None


def _single(values: Sequence[bytes]) -> bytes | None:
    return values[0] if len(values) == 1 else None


def connection_scheme(facts: HandshakeFacts, snapshot: PolicySnapshot) -> str:
    """``https`` or ``http``, as Django's ``HttpRequest.scheme`` would say for this request."""
    if snapshot.proxy_ssl_header is not None:
        value = _single(facts.proxy_ssl_values)
        if value is not None:
            return "https" if value.split(b",", 1)[0].strip() == snapshot.proxy_ssl_value else "http"
    return "https" if facts.connection_secure else "http"


def evaluate(
    facts: HandshakeFacts,
    snapshot: PolicySnapshot,
    *,
    matcher: OriginMatcher | None = None,
    same_origin: bool | None = None,
    missing_origin: str | None = None,
) -> Decision:
    """Decide one handshake. Keyword arguments override the snapshot (for per-guard policy)."""
    matcher = snapshot.matcher if matcher is None else matcher
    same_origin = snapshot.same_origin if same_origin is None else same_origin
    missing_origin = snapshot.missing_origin if missing_origin is None else missing_origin

    scheme = connection_scheme(facts, snapshot)
    host_values = facts.forwarded_hosts if snapshot.use_forwarded_host and facts.forwarded_hosts else facts.hosts
    raw_host = _single(host_values)
    host = parse_host_header(raw_host, scheme) if raw_host is not None else None
    if host is None or not validate_host(host[0], list(snapshot.allowed_hosts)):
        return Decision(Reason.HOST_UNTRUSTED)
    host_name = host[0] if host[1] is None else f"{host[0]}:{host[1]}"

    if not facts.origins:
        if missing_origin == "allow":
            return Decision(None, trusted_by=TRUSTED_BY_MISSING_ALLOW, host=host_name)
        if missing_origin == "token":
            return Decision(None, trusted_by=TRUSTED_BY_MISSING_TOKEN, host=host_name, token_only=True)
        return Decision(Reason.ORIGIN_MISSING, host=host_name)
    if len(facts.origins) > 1:
        return Decision(Reason.ORIGIN_MALFORMED, host=host_name)
    parsed = parse_origin(facts.origins[0])
    if not isinstance(parsed, Origin):
        return Decision(parsed, host=host_name)
    found = matcher.match(parsed, facts.path)
    if found is not None:
        return Decision(None, origin=parsed, trusted_by=found.rule.source, host=host_name)
    if same_origin and (parsed.scheme, parsed.host, parsed.port) == (scheme, host[0], host[1]):
        return Decision(None, origin=parsed, trusted_by=TRUSTED_BY_SAME_ORIGIN, host=host_name)
    return Decision(Reason.ORIGIN_UNTRUSTED, origin=parsed, host=host_name)
