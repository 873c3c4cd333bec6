"""ASGI middleware: the Origin and Host guard, and :class:`GuardStack`, the composed stack.

The guard runs outermost, before cookies, sessions or the database. A denial reads the
``websocket.connect`` message and answers with one message (a ``websocket.close`` with code 4403,
which the server turns into HTTP 403, or a 403 through the ``websocket.http.response``
extension); no consumer is built and no channel-layer channel is created.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware

from . import conf
from .live import ConnectionWatch
from .origins import OriginMatcher, Rule
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
            rejection = Rejection(
                reason=reason,
                close_code=CLOSE_CODES[reason],
                path=printable(facts.path) or "",
                client=client_address(scope),
                origin=printable(facts.origins[0]) if facts.origins else None,
                report_only=report_only,
            )
            try:
                report(rejection, sender=type(self))
            except Exception:
                logger.exception("wsguard: reporting a denial failed")
            if not report_only:
                return await deny(scope, receive, send, code=rejection.close_code, reason=reason)
        return await self.inner(self._child_scope(scope, decision, facts), receive, send)

    def recheck(self, facts: HandshakeFacts, snapshot: PolicySnapshot) -> Decision:
        """The decision for an already-accepted handshake under a new policy snapshot."""
        return evaluate(
            facts, snapshot, matcher=self.matcher, same_origin=self.same_origin, missing_origin=self.missing_origin
        )

    def _child_scope(self, scope: Scope, decision: Decision, facts: HandshakeFacts) -> Scope:
        info = {
            "origin": decision.origin.serialize() if decision.origin is not None else None,
            "trusted_by": decision.trusted_by,
            "host": decision.host,
            "token_only": decision.token_only,
            "denied_reason": None if decision.allowed else str(decision.reason),
            # For live re-checks when the policy changes (wsguard.live.recheck_origins).
            "recheck": partial(self.recheck, facts),
            "recheck_key": (id(self), facts.origins, facts.hosts, facts.forwarded_hosts, facts.path),
        }
        child = {**scope, SCOPE_KEY: info}
        if decision.token_only:
            # A socket with no Origin may only be authenticated by an API token: without the
            # Cookie header no session can be attached to it, whatever the stack below does.
            child["headers"] = _without_cookies(scope)
        return child


def GuardStack(inner: ASGIApp) -> ASGIApp:
    """The whole wsguard stack around a websocket application: the Origin and Host guard first,
    then Channels' cookie, session and user middleware, then the live-socket watch."""
    return OriginGuard(CookieMiddleware(SessionMiddleware(AuthMiddleware(ConnectionWatch(inner)))))
