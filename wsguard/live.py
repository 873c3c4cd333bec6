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

logger = logging.getLogger("wsguard")

CONTROL_GROUP = "wsguard.control"
CONTROL_MESSAGE_TYPE = "wsguard.control"
TICK_SECONDS = 1.0
# channels_redis forgets group members after group_expiry (a day by default) and a restarted Redis
# forgets them at once, so the listener re-joins its group on this period.
REJOIN_SECONDS = 30.0
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
    id: int = field(default_factory=lambda: next(_ids))
    closed: bool = False
    close_code: int | None = None
    accepted_at: float = field(default_factory=time.monotonic)

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

        ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        try:
            layer = get_channel_layer()
            if layer is None:
                await asyncio.Event().wait()  # no layer: ticks only
            attempt = 0
            while True:
                try:
                    channel = await layer.new_channel("wsguard.control.")
                    await layer.group_add(CONTROL_GROUP, channel)
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

    async def _receive_loop(self, layer: Any, channel: str) -> None:
        rejoin_at = time.monotonic() + REJOIN_SECONDS
        while True:
            timeout = max(0.05, rejoin_at - time.monotonic())
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout)
            except TimeoutError:
                await layer.group_add(CONTROL_GROUP, channel)
                rejoin_at = time.monotonic() + REJOIN_SECONDS
                continue
            event = message.get("event") if isinstance(message, dict) else None
            if isinstance(event, dict):
                await dispatch(event)

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

WATCH_SCOPE_KEY = "wsguard.live"


class ConnectionWatch:
    """Registers each accepted websocket so that revocations can close it, without the
    application's consumers doing anything. Innermost in :func:`wsguard.GuardStack`."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        listener.ensure_started()
        socket = _new_socket(scope, send)

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

        try:
            await self.inner(scope, receive, watched_send)
        finally:
            socket.closed = True
            registry.discard(socket)


def _new_socket(scope: Scope, send: Send) -> LiveSocket:
    from .rejections import client_address, printable

    info = scope.get("wsguard") or {}
    user = scope.get("user")
    user_id = None
    try:
        if user is not None and getattr(user, "is_authenticated", False):
            user_id = str(user.pk)
    except Exception:  # a lazy user that cannot be resolved is no user
        user_id = None
    session = scope.get("session")
    session_key = getattr(session, "session_key", None) if user_id is not None else None
    return LiveSocket(
        path=printable(scope.get("path") if isinstance(scope.get("path"), str) else "") or "",
        client=client_address(scope),
        origin=info.get("origin"),
        send=send,
        user_id=user_id,
        session_key=session_key,
        token_id=info.get("token_id"),
        credential=info.get("credential"),
        recheck=info.get("recheck"),
        recheck_key=info.get("recheck_key"),
    )
