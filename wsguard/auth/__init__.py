"""Authenticators: who is on a socket, proven at the handshake.

An authenticator looks at one :class:`Handshake` (the credentials a handshake presents, parsed once
from the scope, no I/O) and says whether its kind of credential is there (:meth:`present`, cheap);
if it is, :meth:`authenticate` (synchronous, run in a database thread) returns :class:`Accepted`,
:class:`Denied` or ``None`` (anonymous: the credential carries no user, e.g. a logged-out session).

Exactly one authenticator decides (docs/auth.md):

* credentials a client sends on purpose (``explicit``: a ticket, an API token) outrank the one a
  browser attaches by itself (the session cookie); two explicit kinds at once are refused;
* a present-but-bad credential is a denial, never a fall-back to another credential;
* an anonymous result is not a decision: the next present authenticator still gets its say, so an
  anonymous answer never hides a valid session.

This module is imported by :mod:`wsguard.rejections`; it must stay free of Django model imports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode

from .reasons import AuthReason

Scope = MutableMapping[str, Any]

PLAIN_PROTOCOL = "wsguard"
TICKET_PROTOCOL_PREFIX = "wsguard.ticket."
BEARER_PROTOCOL_PREFIX = "wsguard.bearer."
TICKET_QUERY_PARAM = "ticket"
HEADER_AUTHORIZATION = b"authorization"
BEARER_SCHEME = "bearer"
# Bounds on what is parsed at all: longer values are not credentials wsguard issued.
MAX_CREDENTIAL_CHARS = 256
MAX_QUERY_BYTES = 4096

CREDENTIAL_SESSION = "session"
CREDENTIAL_TICKET = "ticket"
CREDENTIAL_TOKEN = "token"  # noqa: S105 - a label, not a secret


def digest(kind: str, value: str) -> str:
    """A short, non-reversible name for a secret (session key, ticket), safe to index and publish."""
    return hashlib.sha256(f"wsguard.{kind}:{value}".encode("utf-8", "surrogateescape")).hexdigest()[:40]


def session_digest(session_key: str) -> str:
    return digest("session", session_key)


@dataclass(slots=True)
class Handshake:
    """The credentials one handshake presents, gathered from the scope in a single pass."""

    scope: Scope
    path: str
    origin: str | None
    token_only: bool
    cookies: dict[str, str]
    tickets: list[str] = field(default_factory=list)
    bearers: list[str] = field(default_factory=list)
    subprotocols: list[str] = field(default_factory=list)
    offered_plain: bool = False
    credential_in_protocols: bool = False
    ticket_in_query: bool = False

    @classmethod
    def from_scope(cls, scope: Scope) -> Handshake:
        info = scope.get("wsguard") or {}
        path = scope.get("path")
        cookies = scope.get("cookies")
        handshake = cls(
            scope=scope,
            path=path if isinstance(path, str) else "",
            origin=info.get("origin"),
            token_only=bool(info.get("token_only")),
            cookies=cookies if isinstance(cookies, dict) else {},
        )
        for item in scope.get("subprotocols") or ():
            if not isinstance(item, str):
                continue
            if item.startswith(TICKET_PROTOCOL_PREFIX):
                handshake.tickets.append(item[len(TICKET_PROTOCOL_PREFIX) :])
                handshake.credential_in_protocols = True
            elif item.startswith(BEARER_PROTOCOL_PREFIX):
                handshake.bearers.append(item[len(BEARER_PROTOCOL_PREFIX) :])
                handshake.credential_in_protocols = True
            else:
                handshake.offered_plain |= item == PLAIN_PROTOCOL
                handshake.subprotocols.append(item)
        for item in scope.get("headers") or ():
            try:
                name, value = item
            except (TypeError, ValueError):
                continue
            if isinstance(name, bytes) and isinstance(value, bytes) and name.lower() == HEADER_AUTHORIZATION:
                scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == BEARER_SCHEME:
                    handshake.bearers.append(credentials.strip())
        query = scope.get("query_string")
        if isinstance(query, bytes) and query and b"ticket" in query:
            for key, value in _query_pairs(query):
                if key == TICKET_QUERY_PARAM:
                    handshake.tickets.append(value)
                    handshake.ticket_in_query = True
        return handshake

    def child_scope_updates(self) -> dict[str, Any]:
        """Scope entries that hide the credentials from the application below the stack."""
        updates: dict[str, Any] = {}
        if self.credential_in_protocols:
            updates["subprotocols"] = list(self.subprotocols)
        if self.ticket_in_query:
            updates["query_string"] = redact_query(self.scope.get("query_string") or b"")
        return updates


def _query_pairs(query: bytes) -> list[tuple[str, str]]:
    if len(query) > MAX_QUERY_BYTES:
        query = query[:MAX_QUERY_BYTES]
    try:
        return parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=64)
    except ValueError:
        return []


def redact_query(query: bytes) -> bytes:
    """The query string without any ``ticket`` parameter."""
    kept = [(k, v) for k, v in _query_pairs(query) if k != TICKET_QUERY_PARAM]
    return urlencode(kept).encode("latin-1", "replace")


def well_formed_secret(value: str) -> bool:
    """A ticket or token secret as wsguard issues them: URL-safe base64 characters, bounded."""
    return (
        0 < len(value) <= MAX_CREDENTIAL_CHARS
        and value.isascii()
        and all(c.isalnum() or c in "-_" for c in value)
    )


@dataclass(frozen=True, slots=True)
class Accepted:
    """The handshake authenticates ``user`` with ``credential``.

    ``session`` is the digest of the session the credential came from (logout closes the socket),
    ``token_id`` the API token's id, ``expires_at`` a Unix time at which the socket is re-validated,
    and ``revalidate`` a synchronous callable that returns ``None`` while the credential still holds
    or a reason code once it does not (run by the periodic sweep in a database thread)."""

    user: Any
    credential: str
    session: str | None = None
    token_id: int | None = None
    expires_at: float | None = None
    revalidate: Callable[[], str | None] | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    reason: AuthReason


Outcome = Accepted | Denied | None


@runtime_checkable
class Authenticator(Protocol):
    """What ``WSGUARD["AUTHENTICATORS"]`` entries are (classes, built once with no arguments)."""

    name: ClassVar[str]
    explicit: ClassVar[bool]

    def present(self, handshake: Handshake) -> bool: ...

    def authenticate(self, handshake: Handshake) -> Outcome: ...


def load_authenticators(paths: Iterable[str]) -> tuple[Authenticator, ...]:
    """Import and build the configured authenticators. Raises ImproperlyConfigured naming the fix."""
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    built: list[Authenticator] = []
    for path in paths:
        try:
            factory = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"WSGUARD: AUTHENTICATORS entry {path!r} cannot be imported ({exc}). "
                "Write the dotted path of a class, e.g. 'wsguard.auth.tickets.TicketAuthenticator'."
            ) from None
        try:
            instance = factory()
        except Exception as exc:
            raise ImproperlyConfigured(
                f"WSGUARD: AUTHENTICATORS entry {path!r} cannot be built with no arguments ({exc!r})."
            ) from None
        if not isinstance(instance, Authenticator) or not isinstance(getattr(instance, "name", None), str):
            raise ImproperlyConfigured(
                f"WSGUARD: AUTHENTICATORS entry {path!r} is not an authenticator: it needs a `name`, an "
                "`explicit` flag and `present(handshake)` / `authenticate(handshake)` methods (docs/auth.md)."
            )
        built.append(instance)
    names = [a.name for a in built]
    if len(set(names)) != len(names):
        raise ImproperlyConfigured(f"WSGUARD: AUTHENTICATORS has two authenticators named alike: {names}.")
    return tuple(built)


def decide(authenticators: Sequence[Authenticator], handshake: Handshake) -> tuple[Authenticator | None, Outcome]:
    """Run the one authenticator that decides (see the module docstring). Synchronous."""
    present = [a for a in authenticators if a.present(handshake)]
    explicit = [a for a in present if a.explicit]
    if len(explicit) > 1:
        return explicit[0], Denied(AuthReason.AUTH_AMBIGUOUS)
    if handshake.token_only and not (explicit and explicit[0].name == CREDENTIAL_TOKEN):
        # No Origin and MISSING_ORIGIN = "token": only an API token may authenticate this socket.
        return (explicit[0] if explicit else None), Denied(AuthReason.TOKEN_REQUIRED)
    if explicit:
        outcome = explicit[0].authenticate(handshake)
        # An explicit credential that names nobody is a bad credential, not an anonymous client.
        return explicit[0], outcome if outcome is not None else Denied(AuthReason.AUTH_INVALID)
    for authenticator in present:
        outcome = authenticator.authenticate(handshake)
        if outcome is not None:
            return authenticator, outcome
    return None, None
