"""Live sockets: the per-process registry, the control listener, and :class:`ConnectionWatch`.

Every accepted socket under a :class:`ConnectionWatch` is registered here with what it was trusted
for (origin, user, session, token). Trust changes travel as *control events*: one message on the
channel layer group :data:`CONTROL_GROUP`, received by one listener task per process, which then
closes the matching local sockets. A revocation therefore costs one message per process, not one
per socket, and an idle socket costs one small slotted record and a few index entries.

Other modules register what an event means with :func:`on_event`, and periodic work (policy
version polls, expiry, re-validation sweeps) with :func:`on_tick`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .auth.reasons import CLOSE_CREDENTIALS, LIVE_CLOSE_CODES

logger = logging.getLogger("wsguard")

CONTROL_GROUP = "wsguard.control"
CONTROL_MESSAGE_TYPE = "wsguard.control"
TICK_SECONDS = 1.0
# channels_redis forgets group members after group_expiry (a day by default) and a restarted Redis
# forgets them at once, so the listener re-joins its group on this period (one ZADD + EXPIRE).
REJOIN_SECONDS = 5.0
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
EventHandler = Callable[[dict], Awaitable[None]]
TickHandler = Callable[[], Awaitable[None]]

_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class LiveSocket:
    """One accepted, guarded socket in this process."""

    path: str
    client: str | None
    origin: str | None
    send: Send = field(repr=False)
    user_id: str | None = None
    session_key: str | None = field(default=None, repr=False)
    token_id: int | None = None
    credential: str | None = None
    expires_at: float | None = None
    recheck: Callable[[Any], Any] | None = field(default=None, repr=False)
    recheck_key: tuple | None = field(default=None, repr=False)
    # Synchronous: None while the credential still holds, else a reason code (wsguard.auth.Accepted).
    revalidate: Callable[[], str | None] | None = field(default=None, repr=False)
    id: int = field(default_factory=lambda: next(_ids))
    closed: bool = False
    close_code: int | None = None
    accepted_at: float = field(default_factory=time.monotonic)
    checked_at: float = field(default_factory=time.monotonic)

    async def close(self, code: int, reason: str = "") -> bool:
        """Close the socket from the server side. The server then delivers ``websocket.disconnect``
        to the application, so the consumer cleans up as for any other close. Idempotent."""
        if self.closed:
            return False
        self.closed = True
        self.close_code = code
        registry.discard(self)
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:  # the connection may already be gone
            logger.debug("wsguard: closing socket %s failed: %r", self.id, exc)
        _signal_revoked(self, code, reason)
        return True


def _signal_revoked(socket: LiveSocket, code: int, reason: str) -> None:
    from .signals import socket_revoked

    for receiver, result in socket_revoked.send_robust(
        sender=LiveSocket, reason=reason, close_code=code, path=socket.path, client=socket.client
    ):
        if isinstance(result, Exception):
            logger.error("wsguard: socket_revoked receiver %r failed: %r", receiver, result)


class Registry:
    """This process's live sockets, indexed by what a revocation names."""

    def __init__(self) -> None:
        self.sockets: dict[int, LiveSocket] = {}
        self.by_user: defaultdict[str, set[LiveSocket]] = defaultdict(set)
        self.by_session: defaultdict[str, set[LiveSocket]] = defaultdict(set)
        self.by_token: defaultdict[int, set[LiveSocket]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self.sockets)

    def add(self, socket: LiveSocket) -> None:
        self.sockets[socket.id] = socket
        if socket.user_id is not None:
            self.by_user[socket.user_id].add(socket)
        if socket.session_key is not None:
            self.by_session[socket.session_key].add(socket)
        if socket.token_id is not None:
            self.by_token[socket.token_id].add(socket)

    def discard(self, socket: LiveSocket) -> None:
        if self.sockets.pop(socket.id, None) is None:
            return
        for index, key in (
            (self.by_user, socket.user_id),
            (self.by_session, socket.session_key),
            (self.by_token, socket.token_id),
        ):
            if key is not None and key in index:
                members = index[key]  # type: ignore[index]
                members.discard(socket)
                if not members:
                    del index[key]  # type: ignore[arg-type]

    def for_user(self, user_id: object) -> list[LiveSocket]:
        return list(self.by_user.get(str(user_id), ()))

    def for_session(self, session_key: str) -> list[LiveSocket]:
        return list(self.by_session.get(session_key, ()))

    def for_token(self, token_id: int) -> list[LiveSocket]:
        return list(self.by_token.get(int(token_id), ()))

    def all(self) -> list[LiveSocket]:
        return list(self.sockets.values())


registry = Registry()


async def close_all(sockets: Iterable[LiveSocket], code: int, reason: str) -> int:
    closed = 0
    for socket in list(sockets):
        closed += await socket.close(code, reason)
    if closed:
        logger.info("wsguard: closed %d live socket(s): reason=%s close=%d", closed, reason, code)
    return closed


# --- control events ---------------------------------------------------------------------------

_event_handlers: dict[str, list[EventHandler]] = defaultdict(list)
_tick_handlers: list[TickHandler] = []


def on_event(kind: str) -> Callable[[EventHandler], EventHandler]:
    """Register ``async def handler(event)`` for control events of ``kind``."""

    def register(handler: EventHandler) -> EventHandler:
        if handler not in _event_handlers[kind]:
            _event_handlers[kind].append(handler)
        return handler

    return register


def on_tick(handler: TickHandler) -> TickHandler:
    """Register ``async def handler()`` to run every :data:`TICK_SECONDS` in each process that
    holds guarded sockets."""
    if handler not in _tick_handlers:
        _tick_handlers.append(handler)
    return handler


async def dispatch(event: dict) -> None:
    """Run the handlers for one control event in this process. Never raises."""
    kind = event.get("kind")
    for handler in list(_event_handlers.get(kind, ())) if isinstance(kind, str) else ():
        try:
            await handler(event)
        except Exception:
            logger.exception("wsguard: control event handler %r failed for kind=%s", handler, kind)


async def publish(event: dict) -> None:
    """Send a control event to every process (this one included).

    Through the channel layer when there is one; when there is none, or it cannot be reached,
    the event is applied in this process and the failure is logged (other processes catch up
    through their periodic ticks)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        try:
            await layer.group_send(CONTROL_GROUP, {"type": CONTROL_MESSAGE_TYPE, "event": event})
            if listener.running_here():
                return
        except Exception as exc:
            logger.warning("wsguard: could not broadcast a control event (%s): %r", event.get("kind"), exc)
    await dispatch(event)


def publish_from_sync(event: dict) -> None:
    """:func:`publish` for synchronous code (model signals, admin actions, management commands)."""
    from asgiref.sync import async_to_sync

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(publish)(event)
        return
    # Called from a thread that runs an event loop (sync code under an async caller): schedule.
    asyncio.get_running_loop().create_task(publish(event))


class ControlListener:
    """One task per process: receives control events from the channel layer group, and runs the
    tick handlers. Started lazily by the first guarded connection in each process."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failures = 0

    def running_here(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return self._task is not None and not self._task.done() and self._loop is loop

    def ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._task = loop.create_task(self._run(), name="wsguard-control-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        from channels.layers import get_channel_layer

        loop = asyncio.get_running_loop()
        ticker = loop.create_task(self._tick_forever())
        rejoiner: asyncio.Task | None = None
        try:
            layer = get_channel_layer()
            if layer is None:
                await asyncio.Event().wait()  # no layer: ticks only
            attempt = 0
            channel: str | None = None
            while True:
                try:
                    # The default prefix on purpose: channels_redis reads all of a process's
                    # channels through one Redis key and one lock per prefix, so a channel of its
                    # own would wait behind every consumer's blocking read (up to seconds).
                    # One channel for the process's lifetime: after a failure the group still
                    # routes events to it, so a new name would strand those sent in between.
                    if channel is None:
                        channel = await layer.new_channel()
                    await layer.group_add(CONTROL_GROUP, channel)
                    if rejoiner is None:
                        rejoiner = loop.create_task(self._rejoin_forever(layer, channel))
                    if attempt:
                        logger.warning("wsguard: control listener reconnected to the channel layer")
                    attempt = 0
                    await self._receive_loop(layer, channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    if attempt == 0:
                        logger.warning("wsguard: control listener lost the channel layer (%r); retrying", exc)
                    attempt += 1
                    await asyncio.sleep(delay)
        finally:
            ticker.cancel()
            if rejoiner is not None:
                rejoiner.cancel()

    async def _receive_loop(self, layer: Any, channel: str) -> None:
        # Never time the receive out: cancelling channels_redis' receive mid-read can drop the
        # message it just popped. Group membership is renewed by a task of its own instead.
        while True:
            message = await layer.receive(channel)
            event = message.get("event") if isinstance(message, dict) else None
            if isinstance(event, dict):
                await dispatch(event)

    async def _rejoin_forever(self, layer: Any, channel: str) -> None:
        """Re-join the control group on a short period: a restarted Redis (or group_expiry)
        forgets members, and a worker outside the group would miss revocations."""
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                await layer.group_add(CONTROL_GROUP, channel)
            except Exception as exc:  # the receive loop reports outages; stay quiet here
                logger.debug("wsguard: re-joining the control group failed: %r", exc)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for handler in list(_tick_handlers):
                try:
                    await handler()
                except Exception:
                    logger.exception("wsguard: periodic handler %r failed", handler)


listener = ControlListener()


async def recheck_origins(snapshot: Any) -> int:
    """Re-decide every live socket's handshake under ``snapshot`` and close (4403) those it no
    longer trusts. Each distinct handshake (origin, host, path, guard) is decided once."""
    from .rejections import CLOSE_ORIGIN

    verdicts: dict[tuple, Any] = {}
    doomed: list[tuple[LiveSocket, str]] = []
    for socket in registry.all():
        if socket.recheck is None:
            continue
        key = socket.recheck_key if socket.recheck_key is not None else (socket.id,)
        if key not in verdicts:
            try:
                verdicts[key] = socket.recheck(snapshot)
            except Exception:
                logger.exception("wsguard: re-checking a live socket failed; closing it")
                verdicts[key] = None
        decision = verdicts[key]
        if decision is None or not decision.allowed:
            doomed.append((socket, "guard-error" if decision is None else str(decision.reason)))
    closed = 0
    for socket, reason in doomed:
        closed += await socket.close(CLOSE_ORIGIN, reason)
    if closed:
        logger.warning("wsguard: policy change closed %d live socket(s) whose origin is no longer trusted", closed)
    return closed


# --- the middleware ---------------------------------------------------------------------------

class ConnectionWatch:
    """Registers each accepted websocket so that revocations can close it, and enforces the
    message limits (``MAX_MESSAGE_BYTES``: close 1009; ``MESSAGE_RATE`` per connection: close
    4429), without the application's consumers doing anything. Innermost in
    :func:`wsguard.GuardStack`."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        listener.ensure_started()
        socket = _new_socket(scope, send)
        max_bytes, rate = _message_limits()

        async def watched_send(message: dict) -> None:
            kind = message.get("type")
            if socket.closed:
                # Closed by wsguard: the application may still try to talk until it sees the
                # disconnect; the server must not receive anything more.
                return
            if kind == "websocket.accept":
                await send(message)
                registry.add(socket)
                return
            if kind == "websocket.close":
                socket.closed = True
                registry.discard(socket)
            await send(message)

        window_start = time.monotonic()
        window_count = 0

        async def watched_receive() -> dict:
            nonlocal window_start, window_count
            message = await receive()
            if message.get("type") != "websocket.receive" or socket.closed:
                return message
            reason: str | None = None
            if _too_big(message, max_bytes):
                reason = "message-too-big"
            elif rate is not None:
                now = time.monotonic()
                if now - window_start >= rate[1]:
                    window_start, window_count = now, 0
                window_count += 1
                if window_count > rate[0]:
                    reason = "message-rate"
            if reason is None:
                return message
            code = LIVE_CLOSE_CODES[reason]
            _log_limit(socket, reason, code)
            await socket.close(code, reason)
            return {"type": "websocket.disconnect", "code": code}

        try:
            await self.inner(scope, watched_receive, watched_send)
        finally:
            socket.closed = True
            registry.discard(socket)




def _message_limits() -> tuple[int | None, tuple[int, int] | None]:
    from . import conf

    wsguard = conf.get_settings()
    return wsguard.raw["MAX_MESSAGE_BYTES"], wsguard.message_rate


def _too_big(message: dict, max_bytes: int | None) -> bool:
    if max_bytes is None:
        return False
    data = message.get("bytes")
    if isinstance(data, (bytes, bytearray)) and len(data) > max_bytes:
        return True
    text = message.get("text")
    if isinstance(text, str) and len(text) * 4 > max_bytes:
        # A UTF-8 character is 1 to 4 bytes: only long texts need encoding to be measured.
        return len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes
    return False


def _log_limit(socket: LiveSocket, reason: str, code: int) -> None:
    from .rejections import rate_limited_log

    rate_limited_log().emit(
        logging.WARNING,
        f"wsguard closed a websocket: reason={reason} close={code} path={socket.path!r} client={socket.client or '-'}",
        {"wsguard_reason": reason, "wsguard_path": socket.path, "wsguard_client": socket.client},
    )


# --- revocation: control events naming a user, a session or a token ---------------------------

EVENT_USER = "user"
EVENT_SESSION = "session"
EVENT_TOKEN = "token"  # noqa: S105 - an event kind, not a secret


def _event_reason(event: dict, default: str) -> str:
    reason = event.get("reason")
    return reason if isinstance(reason, str) and 0 < len(reason) <= 40 else default


@on_event(EVENT_USER)
async def _revoke_user(event: dict) -> None:
    """``{"kind": "user", "user": pk, "reason": ..., "credentials": ["session", "ticket"] | None}``:
    close the user's sockets (only those authenticated by the listed credentials, if given)."""
    user = event.get("user")
    if not isinstance(user, (str, int)):
        return
    only = event.get("credentials")
    sockets = registry.for_user(user)
    if isinstance(only, list):
        sockets = [s for s in sockets if s.credential in only]
    await close_all(sockets, CLOSE_CREDENTIALS, _event_reason(event, "user-inactive"))


@on_event(EVENT_SESSION)
async def _revoke_session(event: dict) -> None:
    """``{"kind": "session", "session": <digest>, "reason": ...}``: close the sockets that session
    opened (by cookie or by a ticket it minted)."""
    session = event.get("session")
    if isinstance(session, str):
        await close_all(registry.for_session(session), CLOSE_CREDENTIALS, _event_reason(event, "logged-out"))


@on_event(EVENT_TOKEN)
async def _revoke_token(event: dict) -> None:
    """``{"kind": "token", "token": id, "reason": ...}``: close the token's sockets."""
    token = event.get("token")
    if isinstance(token, int) and not isinstance(token, bool):
        await close_all(registry.for_token(token), CLOSE_CREDENTIALS, _event_reason(event, "token-revoked"))


# --- the periodic sweep: re-validation and credential expiry ---------------------------------

SWEEP_SECONDS = 5.0
SWEEP_BATCH = 500
# A credential past its expiry that still holds (a sliding session) is looked at again this soon.
RECHECK_AFTER_EXPIRY = 60.0
_last_sweep = 0.0


def _due(socket: LiveSocket, now_wall: float, now_mono: float, every: float) -> bool:
    if socket.revalidate is None or socket.closed:
        return False
    if socket.expires_at is not None and socket.expires_at <= now_wall:
        return True
    return now_mono - socket.checked_at >= every


def _revalidate_all(sockets: list[LiveSocket]) -> list[tuple[LiveSocket, str | None]]:
    results: list[tuple[LiveSocket, str | None]] = []
    for socket in sockets:
        try:
            results.append((socket, socket.revalidate() if socket.revalidate is not None else None))
        except Exception:
            # The database is away: keep the socket (revocation events still close it) and retry.
            logger.warning("wsguard: re-validating socket %s failed; will retry", socket.id, exc_info=True)
            results.append((socket, None))
    return results


async def sweep(force: bool = False) -> int:
    """Re-validate sockets whose credential expired or that were last checked
    ``REVALIDATE_SECONDS`` ago; close (4401) those whose credential no longer holds."""
    global _last_sweep
    from channels.db import database_sync_to_async

    from . import conf

    now_mono = time.monotonic()
    if not force and now_mono - _last_sweep < SWEEP_SECONDS:
        return 0
    _last_sweep = now_mono
    every = float(conf.get_settings().raw["REVALIDATE_SECONDS"])
    now_wall = time.time()
    due = [s for s in registry.all() if _due(s, now_wall, now_mono, every)][:SWEEP_BATCH]
    if not due:
        return 0
    results = await database_sync_to_async(_revalidate_all)(due)
    closed = 0
    checked_at = time.monotonic()
    for socket, reason in results:
        if reason is None:
            socket.checked_at = checked_at
            if socket.expires_at is not None and socket.expires_at <= now_wall:
                socket.expires_at = now_wall + RECHECK_AFTER_EXPIRY
            continue
        closed += await socket.close(CLOSE_CREDENTIALS, str(reason))
    if closed:
        logger.warning("wsguard: re-validation closed %d live socket(s)", closed)
    return closed


@on_tick
async def _sweep_tick() -> None:
    await sweep()


@on_tick
async def _renew_socket_slots() -> None:
    from asgiref.sync import sync_to_async

    from .limits import slots

    if slots.renewal_due():
        await sync_to_async(slots.renew, thread_sensitive=False)()


def _new_socket(scope: Scope, send: Send) -> LiveSocket:
    from .auth import session_digest
    from .rejections import client_address, printable

    info = scope.get("wsguard") or {}
    user = scope.get("user")
    user_id = None
    try:
        if user is not None and getattr(user, "is_authenticated", False):
            user_id = str(user.pk)
    except Exception:  # a lazy user that cannot be resolved is no user
        user_id = None
    if "auth" in info:
        # Authenticated by wsguard.HandshakeAuth: it names the session (as a digest) itself.
        session_key = info.get("session") if user_id is not None else None
    else:
        raw_key = getattr(scope.get("session"), "session_key", None) if user_id is not None else None
        session_key = session_digest(raw_key) if isinstance(raw_key, str) else None
    return LiveSocket(
        path=printable(scope.get("path") if isinstance(scope.get("path"), str) else "") or "",
        client=client_address(scope),
        origin=info.get("origin"),
        send=send,
        user_id=user_id,
        session_key=session_key,
        token_id=info.get("token_id"),
        credential=info.get("credential"),
        expires_at=info.get("expires_at"),
        recheck=info.get("recheck"),
        recheck_key=info.get("recheck_key"),
        revalidate=info.get("revalidate"),
    )
