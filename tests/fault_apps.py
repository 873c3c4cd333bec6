"""Real parts for the fault tests (tests/test_faults.py): a private ``redis-server`` that a test may
stop and restart without disturbing anyone else's Redis, and a signed-in chat user of the demo who
talks to any of its daphne workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets.sync.client

from tests.demo_site import DEMO_PASSWORD
from tests.servers import Daphne, HttpClient, free_port


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary on this machine."""


@dataclass
class PrivateRedis:
    """A ``redis-server`` on a free loopback port, no persistence, data dir in ``directory``.
    ``stop()`` and ``start()`` may be called any number of times; the port stays the same."""

    directory: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str:
        found = shutil.which("redis-server")
        if found is None:
            raise RedisUnavailable("no redis-server binary on PATH")
        return found

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--protected-mode", "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
            if self.answers():
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class ChatUser(HttpClient):
    """A demo user signed in over HTTP on one worker (the session is in the shared database, so
    its cookie works on every worker)."""

    def __init__(self, name: str, server: Daphne) -> None:
        super().__init__(f"http://{server.base}")
        self.name = name
        self.server = server

    def login(self) -> ChatUser:
        self.sign_in(self.name, DEMO_PASSWORD)
        return self

    def logout(self) -> int:
        headers = {"X-CSRFToken": self.cookie("csrftoken") or "", "Origin": self.base}
        status, _ = self.request("/accounts/logout/", {}, headers)
        return status

    def connect(self, server: Daphne, room: str = "lobby") -> ChatSocket:
        """The chat socket on ``server``, authenticated by the session cookie, Origin the page's."""
        connection = websockets.sync.client.connect(
            f"ws://{server.base}/ws/chat/{room}/",
            origin=self.base,
            additional_headers={"Cookie": self.cookie_header()},
            open_timeout=15,
        ).__enter__()  # a context manager; entered here, closed by ChatSocket.close or the server
        chat = ChatSocket(connection, self.name)
        chat.history = chat.next("history")
        return chat


@dataclass
class ChatSocket:
    connection: websockets.sync.client.ClientConnection
    user: str
    history: dict | None = None
    acked: list[dict] = field(default_factory=list)
    sent: int = 0

    def next(self, kind: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} frame within {timeout}s")
            frame = json.loads(self.connection.recv(timeout=left))
            if frame["type"] == kind:
                return frame

    def say(self, text: str) -> dict:
        """Send one message and wait for its ack (or an error frame); returns what came back."""
        self.sent += 1
        nonce = f"{self.user}-{os.getpid()}-{time.monotonic_ns()}"
        self.connection.send(json.dumps({"type": "message", "text": text, "nonce": nonce}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            frame = json.loads(self.connection.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame.get("nonce") == nonce and frame["type"] in ("ack", "error"):
                if frame["type"] == "ack":
                    self.acked.append(frame["message"])
                return frame
        raise TimeoutError("no ack")

    def close(self) -> None:
        self.connection.close()


# --- the load test's application -------------------------------------------------------------


def _build_load_application() -> object:
    """``tests.fault_apps:load_application`` for daphne: one echo consumer, ``/g/`` through the
    whole ``wsguard.GuardStack`` (with ``guard(allow_anonymous=True)``, so a token or nothing
    gets in) and ``/u/`` with no wsguard at all, the baseline of bench/load.py."""
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    from wsguard import GuardStack, guard

    class Idle(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self.send(text_data=(text_data or "")[:100])

    guarded = GuardStack(URLRouter([path("g/ws/", guard(Idle.as_asgi(), allow_anonymous=True))]))
    bare = URLRouter([path("u/ws/", Idle.as_asgi())])

    async def websocket(scope: dict, receive: object, send: object) -> None:
        app = guarded if str(scope.get("path", "")).startswith("/g/") else bare
        await app(scope, receive, send)  # type: ignore[arg-type]

    return ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket})


def __getattr__(name: str) -> object:
    if name == "load_application":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.auth_settings")
        app = _build_load_application()
        globals()["load_application"] = app
        return app
    raise AttributeError(name)


async def open_idle(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[object, object, int]:
    """One upgrade, left open: (reader, writer, status)."""
    import asyncio

    from bench.common import parse_status, upgrade_request

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(port, path, headers, None))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, parse_status(head)


async def server_close_code(reader: object, within: float) -> int | None:
    """Read server frames (unmasked, RFC 6455 section 5.2) until a close frame; its code, or None
    if the connection ended or ``within`` seconds passed first."""
    import asyncio
    import struct

    async def read() -> int | None:
        while True:
            first, second = await reader.readexactly(2)  # type: ignore[attr-defined]
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))  # type: ignore[attr-defined]
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))  # type: ignore[attr-defined]
            payload = await reader.readexactly(length)  # type: ignore[attr-defined]
            if first & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    try:
        return await asyncio.wait_for(read(), within)
    except (TimeoutError, asyncio.IncompleteReadError, OSError):
        return None
