"""Real parts for the fault tests (tests/test_faults.py): a private ``redis-server`` that a test may
stop and restart without disturbing anyone else's Redis, and a signed-in chat user of the demo who
talks to any of its daphne workers."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websockets.sync.client

from tests.demo_site import DEMO_PASSWORD
from tests.servers import Daphne, free_port


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


@dataclass
class ChatUser:
    """A demo user signed in over HTTP on one worker (the session is in the shared database, so
    its cookie works on every worker)."""

    name: str
    server: Daphne
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    @property
    def base(self) -> str:
        return f"http://{self.server.base}"

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def login(self) -> ChatUser:
        status, page = self.request("/accounts/login/")
        assert status == 200, page[:500]
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        form = {"username": self.name, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token}
        status, _ = self.request("/accounts/login/", form, {"Referer": self.base + "/accounts/login/"})
        assert status == 200 and self.cookie("sessionid"), f"login of {self.name} failed"
        return self

    def logout(self) -> int:
        headers = {"X-CSRFToken": self.cookie("csrftoken") or "", "Origin": self.base}
        status, _ = self.request("/accounts/logout/", {}, headers)
        return status

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

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
