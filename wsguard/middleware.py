"""ASGI middleware: the Origin and Host guard, and :class:`GuardStack`, the composed stack.

The guard runs outermost, before cookies, sessions or the database. A denial reads the
``websocket.connect`` message and answers with one message (a ``websocket.close`` with code 4403,
which the server turns into HTTP 403, or a 403 through the ``websocket.http.response``
extension); no consumer is built and no channel-layer channel is created.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware

from . import conf, limits, sync
from .auth import PLAIN_PROTOCOL, Accepted, Authenticator, Denied, Handshake, decide, load_authenticators
from .auth.reasons import AuthReason
from .live import ConnectionWatch
from .origins import Origin, OriginMatcher, Reason, Rule
from .policy import Decision, HandshakeFacts, PolicySnapshot, evaluate, get_snapshot
from .rejections import CLOSE_CODES, CLOSE_ORIGIN, Rejection, client_address, printable, report

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("wsguard")

SCOPE_KEY = "wsguard"
HTTP_RESPONSE_EXTENSION = "websocket.http.response"
HEADER_COOKIE = b"cookie"


async def deny(scope: Scope, receive: Receive, send: Send, *, code: int, reason: str) -> None:
    """Refuse a websocket handshake before it is accepted."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    await refuse(scope, send, code=code, reason=reason)


async def refuse(scope: Scope, send: Send, *, code: int, reason: str) -> None:
    """Refuse a handshake whose ``websocket.connect`` message has already been received."""
    extensions = scope.get("extensions") or {}
    if HTTP_RESPONSE_EXTENSION in extensions:
        body = f"wsguard: handshake refused ({reason})\n".encode("ascii")
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"x-wsguard-reason", reason.encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": code, "reason": reason})


def _without_cookies(scope: Scope) -> list[tuple[bytes, bytes]]:
    kept = []
    for item in scope.get("headers") or ():
        name = item[0] if isinstance(item, (list, tuple)) and item else b""
        if not (isinstance(name, bytes) and name.lower() == HEADER_COOKIE):
            kept.append(item)
    return kept


class OriginGuard:
    """Deny websocket handshakes whose ``Host`` is not allowed or whose ``Origin`` is not trusted.

    ``allowed_origins=None`` enforces the project's policy (``WSGUARD["ALLOWED_ORIGINS"]`` plus
    admin-managed origins); a list enforces exactly those patterns. ``same_origin`` and
    ``missing_origin`` default to the settings. Other scope types pass straight through.
    """

    def __init__(
        self,
        inner: ASGIApp,
        *,
        allowed_origins: Iterable[str] | None = None,
        same_origin: bool | None = None,
        missing_origin: str | None = None,
    ) -> None:
        self.inner = inner
        # Validate the project's settings at start-up rather than on the first handshake.
        conf.get_settings()
        self.matcher: OriginMatcher | None = None
        if allowed_origins is not None:
            patterns, problems = conf.parse_patterns(
                list(allowed_origins) if not isinstance(allowed_origins, (str, bytes)) else allowed_origins,
                where="OriginGuard(allowed_origins=...)",
            )
            if problems:
                raise problems[0].as_error()
            self.matcher = OriginMatcher.compile(Rule(p, source="guard") for p in patterns)
        if missing_origin is not None and missing_origin not in conf.MISSING_ORIGIN_CHOICES:
            raise conf.Problem(
                "wsguard.E003",
                f"OriginGuard(missing_origin={missing_origin!r}) is not one of {conf.MISSING_ORIGIN_CHOICES}.",
                'Use "deny", "token" or "allow".',
            ).as_error()
        self.same_origin = same_origin
        self.missing_origin = missing_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        if not sync.loaded():
            await sync.ensure_loaded()
        try:
            snapshot = get_snapshot()
            facts = HandshakeFacts.from_scope(scope, snapshot.proxy_ssl_header)
            decision = evaluate(
                facts,
                snapshot,
                matcher=self.matcher,
                same_origin=self.same_origin,
                missing_origin=self.missing_origin,
            )
            report_only = snapshot.report_only
        except Exception:
            # Fail closed: an unexpected error in the guard is a denial, never an open door.
            logger.exception("wsguard: origin guard failed; denying the handshake")
            return await deny(scope, receive, send, code=CLOSE_ORIGIN, reason="guard-error")
        if not decision.allowed:
            reason = str(decision.reason)
            # The Origin as sent (escaped and clipped in the log line), not the normalised one.
            _report(scope, facts.origins[0] if facts.origins else None, reason, report_only, sender=type(self))
            if not report_only:
                return await deny(scope, receive, send, code=CLOSE_CODES[reason], reason=reason)
        return await self.inner(self._child_scope(scope, decision, facts), receive, send)

    def recheck(self, facts: HandshakeFacts, snapshot: PolicySnapshot) -> Decision:
        """The decision for an already-accepted handshake under a new policy snapshot."""
        return evaluate(
            facts, snapshot, matcher=self.matcher, same_origin=self.same_origin, missing_origin=self.missing_origin
        )

    def _child_scope(self, scope: Scope, decision: Decision, facts: HandshakeFacts) -> Scope:
        info = {
            "origin": decision.origin.serialize() if decision.origin is not None else None,
            "parsed_origin": decision.origin,
            "trusted_by": decision.trusted_by,
            "host": decision.host,
            "token_only": decision.token_only,
            "denied_reason": None if decision.allowed else str(decision.reason),
            # For live re-checks when the policy changes (wsguard.live.recheck_origins).
            "recheck": partial(self.recheck, facts),
            "recheck_key": (id(self), facts),
        }
        child = {**scope, SCOPE_KEY: info}
        if decision.token_only:
            # A socket with no Origin may only be authenticated by an API token: without the
            # Cookie header no session can be attached to it, whatever the stack below does.
            child["headers"] = _without_cookies(scope)
        return child


# --- authentication ----------------------------------------------------------------------------

STACK_MISUSE = (
    "wsguard's {what} found no Origin guard above it (scope['wsguard'] is missing). Wrap the websocket "
    "router in wsguard.GuardStack: ProtocolTypeRouter({{'websocket': GuardStack(URLRouter(...))}})."
)
GUARD_MISUSE = (
    "wsguard.guard() found no wsguard authentication above it (scope['wsguard']['auth'] is missing). "
    "Wrap the websocket router in wsguard.GuardStack: ProtocolTypeRouter({'websocket': GuardStack(URLRouter(...))})."
)


@dataclass(slots=True)
class AuthState:
    """One handshake's authentication outcome, shared with the route's :func:`guard` (which may
    narrow it) and the deferred anonymous check that runs when the application reads
    ``websocket.connect``."""

    credential: str | None
    stack_allows_anonymous: bool
    route_allows_anonymous: bool = False
    settled: bool = False
    refused: bool = False


_built_authenticators: dict[tuple[str, ...], tuple[Authenticator, ...]] = {}


@conf.on_reset
def _forget_authenticators() -> None:
    _built_authenticators.clear()


def authenticators_for(paths: tuple[str, ...] | None) -> tuple[Authenticator, ...]:
    """The built authenticators for ``paths`` (the settings' when None), built once per process."""
    key = tuple(conf.get_settings().raw["AUTHENTICATORS"]) if paths is None else paths
    built = _built_authenticators.get(key)
    if built is None:
        built = _built_authenticators[key] = load_authenticators(key)
    return built


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: Accepted | Denied | None
    slot: str = ""


def _authenticate(authenticators: tuple[Authenticator, ...], handshake: Handshake, client: str | None) -> _Verdict:
    """The synchronous half of the authentication step, in one database thread hop: the handshake
    rate limit, the deciding authenticator, and the per-user socket slot."""
    if not limits.handshake_allowed(client):
        return _Verdict(Denied(AuthReason.RATE_LIMITED))
    _, outcome = decide(authenticators, handshake)
    if isinstance(outcome, Accepted):
        slot = limits.slots.acquire(str(outcome.user.pk), limits.max_sockets_per_user())
        if slot is None:
            return _Verdict(Denied(AuthReason.TOO_MANY_SOCKETS))
        return _Verdict(outcome, slot)
    return _Verdict(outcome)


class HandshakeAuth:
    """Authenticate a websocket handshake after the Origin guard: exactly one authenticator decides
    (docs/auth.md), ``scope["user"]`` is set once, and ``scope["wsguard"]`` says how. A bad
    credential is refused with 4401 and a reason code; an anonymous handshake is refused (4401
    ``auth-required``) unless ``allow_anonymous`` or the route's :func:`guard` allows it.

    Credentials in ``Sec-WebSocket-Protocol`` and the ``ticket`` query parameter are hidden from the
    application, and the subprotocol the server echoes is never a credential."""

    def __init__(
        self, inner: ASGIApp, *, authenticators: Iterable[str] | None = None, allow_anonymous: bool = False
    ) -> None:
        self.inner = inner
        conf.get_settings()
        self.paths = tuple(authenticators) if authenticators is not None else None
        self.allow_anonymous = allow_anonymous
        if self.paths is not None:
            load_authenticators(self.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        info = scope.get(SCOPE_KEY)
        if not isinstance(info, dict):
            raise ValueError(STACK_MISUSE.format(what="HandshakeAuth"))
        client = client_address(scope)
        handshake: Handshake | None = None
        try:
            handshake = Handshake.from_scope(scope)
            if handshake.credential_in_protocols and not handshake.offered_plain:
                verdict = _Verdict(Denied(AuthReason.SUBPROTOCOL_MISSING))
            else:
                verdict = await database_sync_to_async(_authenticate)(
                    authenticators_for(self.paths), handshake, client
                )
        except Exception as exc:
            _log_auth_failure(exc)
            verdict = _Verdict(Denied(AuthReason.AUTH_ERROR))
            if handshake is None:  # only when the scope itself could not be read
                handshake = Handshake(scope=scope, path="", origin=None, token_only=False, cookies={})
        report_only = conf.get_settings().report_only
        outcome = verdict.outcome
        if isinstance(outcome, Denied):
            _report(scope, info.get("origin"), outcome.reason, report_only, sender=type(self))
            if not report_only:
                return await deny(scope, receive, send, code=CLOSE_CODES[outcome.reason], reason=outcome.reason)
            outcome = None
        try:
            await self._serve(scope, receive, send, info, handshake, outcome, report_only)
        finally:
            if verdict.slot:
                if limits.cache_is_local():
                    limits.slots.release(verdict.slot)
                else:
                    await sync_to_async(limits.slots.release, thread_sensitive=False)(verdict.slot)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        info: dict,
        handshake: Handshake,
        outcome: Accepted | None,
        report_only: bool,
    ) -> None:
        state = AuthState(
            credential=outcome.credential if outcome is not None else None,
            stack_allows_anonymous=self.allow_anonymous or report_only,
        )
        auth_info: dict[str, Any] = {"credential": state.credential, "auth": state}
        if outcome is not None:
            user = outcome.user
            auth_info.update(
                token_id=outcome.token_id,
                session=outcome.session,
                expires_at=outcome.expires_at,
                revalidate=outcome.revalidate,
            )
        else:
            from django.contrib.auth.models import AnonymousUser

            user = AnonymousUser()
        child = {**scope, **handshake.child_scope_updates(), "user": user, SCOPE_KEY: {**info, **auth_info}}

        if outcome is None and not state.stack_allows_anonymous:
            receive = _anonymous_check(child, receive, send, state)
        if handshake.credential_in_protocols or outcome is None:
            send = _guarded_send(send, handshake, state)
        await self.inner(child, receive, send)


def _unreachable(exc: BaseException) -> bool:
    """Is ``exc`` the database or the cache being out of reach (an outage, not a defect)?"""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError, OSError)):
        return True
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        return False
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def _log_auth_failure(exc: Exception) -> None:
    """During a database or cache outage every handshake that needs it fails alike: one
    rate-limited line naming the exception class (its text may quote a query), no traceback.
    Anything else is a defect and is logged in full."""
    if not _unreachable(exc):
        logger.exception("wsguard: the authentication step failed; denying the handshake")
        return
    from .rejections import rate_limited_log

    rate_limited_log().emit(
        logging.WARNING,
        f"wsguard: the authentication step could not reach the database or cache ({type(exc).__name__}); "
        "denying the handshake",
        {"wsguard_reason": AuthReason.AUTH_ERROR},
    )


def _report(scope: Scope, origin: bytes | str | None, reason: str, report_only: bool, sender: object) -> None:
    """Log and signal one denial (never raises): the reason, path, client and Origin."""
    path = scope.get("path")
    rejection = Rejection(
        reason=str(reason),
        close_code=CLOSE_CODES[reason],
        path=printable(path if isinstance(path, str) else "") or "",
        client=client_address(scope),
        origin=printable(origin) if origin else None,
        report_only=report_only,
    )
    try:
        report(rejection, sender=sender)
    except Exception:
        logger.exception("wsguard: reporting a denial failed")


def _anonymous_check(scope: Scope, receive: Receive, send: Send, state: AuthState) -> Receive:
    """Refuse an anonymous handshake when the application first reads ``websocket.connect``,
    unless the route's :func:`guard` has allowed anonymous clients by then. (The route is only
    known below the URLRouter, so this cannot be decided earlier.)"""

    async def checked_receive() -> dict:
        message = await receive()
        if state.settled or message.get("type") != "websocket.connect":
            return message
        state.settled = True
        if state.route_allows_anonymous:
            return message
        reason = AuthReason.AUTH_REQUIRED
        _report(scope, scope[SCOPE_KEY].get("origin"), reason, False, sender=HandshakeAuth)
        state.refused = True
        await refuse(scope, send, code=CLOSE_CODES[reason], reason=reason)
        return {"type": "websocket.disconnect", "code": CLOSE_CODES[reason]}

    return checked_receive


def _guarded_send(send: Send, handshake: Handshake, state: AuthState) -> Send:
    async def guarded_send(message: dict) -> None:
        if state.refused:
            return  # refused before accept: the application must not talk on this socket
        if message.get("type") == "websocket.accept" and handshake.credential_in_protocols:
            chosen = message.get("subprotocol")
            if chosen is None or chosen not in handshake.subprotocols:
                # Never echo a credential; the client offered the plain protocol beside it.
                message = {**message, "subprotocol": PLAIN_PROTOCOL}
        await send(message)

    return guarded_send


class RouteGuard:
    """One route's narrower policy (see :func:`guard`)."""

    def __init__(
        self,
        inner: ASGIApp,
        *,
        allow_anonymous: bool = False,
        authenticators: Iterable[str] | None = None,
        origins: Iterable[str] | None = None,
    ) -> None:
        self.inner = inner
        self.allow_anonymous = allow_anonymous
        self.credentials: frozenset[str] | None = None
        if authenticators is not None:
            if isinstance(authenticators, str):
                raise ValueError(f"wsguard.guard(authenticators=...) takes a list of names, e.g. [{authenticators!r}].")
            known = {a.name for a in authenticators_for(None)}
            names = frozenset(authenticators)
            unknown = sorted(names - known)
            if unknown:
                raise ValueError(
                    f"wsguard.guard(authenticators={sorted(names)!r}): {unknown} not among the stack's "
                    f"authenticators {sorted(known)!r}; a route may narrow the stack's policy, never widen it "
                    '(add it to WSGUARD["AUTHENTICATORS"] first).'
                )
            self.credentials = names
        self.matcher: OriginMatcher | None = None
        if origins is not None:
            patterns, problems = conf.parse_patterns(
                list(origins) if not isinstance(origins, (str, bytes)) else origins, where="guard(origins=...)"
            )
            if problems:
                raise problems[0].as_error()
            self.matcher = OriginMatcher.compile(Rule(p, source="route") for p in patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        info = scope.get(SCOPE_KEY)
        state = info.get("auth") if isinstance(info, dict) else None
        if not isinstance(info, dict) or not isinstance(state, AuthState):
            raise ValueError(GUARD_MISUSE)
        reason: str | None = None
        if self.matcher is not None:
            reason = self._origin_reason(info.get("parsed_origin"), scope)
        if reason is None:
            if state.credential is None:
                if self.allow_anonymous:
                    state.route_allows_anonymous = True
                elif state.stack_allows_anonymous:
                    reason = AuthReason.AUTH_REQUIRED
            elif self.credentials is not None and state.credential not in self.credentials:
                reason = AuthReason.AUTH_NOT_ALLOWED
        if reason is None:
            return await self.inner(scope, receive, send)
        state.settled = True
        report_only = conf.get_settings().report_only
        _report(scope, info.get("origin"), reason, report_only, sender=type(self))
        if report_only:
            return await self.inner(scope, receive, send)
        return await deny(scope, receive, send, code=CLOSE_CODES[reason], reason=reason)

    def _origin_reason(self, origin: object, scope: Scope) -> str | None:
        if not isinstance(origin, Origin):
            return Reason.ORIGIN_MISSING
        path = scope.get("path")
        if self.matcher is None or self.matcher.match(origin, path if isinstance(path, str) else "") is None:
            return Reason.ORIGIN_UNTRUSTED
        return None


def guard(
    app: ASGIApp,
    *,
    allow_anonymous: bool = False,
    authenticators: Iterable[str] | None = None,
    origins: Iterable[str] | None = None,
) -> ASGIApp:
    """Narrow the stack's policy for one route, inside the URLRouter::

        path("ws/feed/", guard(FeedConsumer.as_asgi(), allow_anonymous=True)),
        path("ws/admin/", guard(AdminConsumer.as_asgi(), authenticators=["ticket"],
                                origins=["https://admin.example.com"])),

    ``authenticators`` names the credentials this route accepts (``"session"``, ``"ticket"``,
    ``"token"``: a subset of the stack's), ``origins`` patterns the Origin must also match (the
    stack must trust it too; a socket without an Origin is refused), ``allow_anonymous`` lets
    clients without any credential in. Needs :func:`GuardStack` above it (else ``ValueError``)."""
    return RouteGuard(app, allow_anonymous=allow_anonymous, authenticators=authenticators, origins=origins)


def GuardStack(inner: ASGIApp) -> ASGIApp:
    """The whole wsguard stack around a websocket application: the Origin and Host guard first,
    then Channels' cookie and session middleware, then the authentication step, then the
    live-socket watch."""
    return OriginGuard(CookieMiddleware(SessionMiddleware(HandshakeAuth(ConnectionWatch(inner)))))
