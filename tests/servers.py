"""Real servers for tests: a daphne subprocess on a free loopback port, and a raw WebSocket
handshake client that reports the HTTP status line exactly as the server sent it."""

from __future__ import annotations

import base64
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Daphne:
    """A daphne process serving ``app`` (dotted path) with ``env`` added to the environment."""

    app: str = "demo_project.asgi:application"
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    log_path: Path | None = None
    # Extra daphne options, e.g. ("--ping-interval", "3600") for clients that never answer pings.
    args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    def start(self, tmp_dir: Path, timeout: float = 20.0) -> Daphne:
        self.port = self.port or free_port()
        self.log_path = tmp_dir / f"daphne-{self.port}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **self.env}
        env.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.args, self.app],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne did not listen within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"


def raw_handshake(
    port: int,
    path: str = "/ws/echo/",
    headers: list[tuple[str, str | bytes]] | None = None,
    host: str | bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """Send one upgrade request exactly as given (duplicates and odd bytes included) and return
    the status code and the raw response head. The socket is closed afterwards."""
    key = base64.b64encode(os.urandom(16))
    lines = [f"GET {path} HTTP/1.1".encode()]
    lines.append(b"Host: " + _b(host if host is not None else f"127.0.0.1:{port}"))
    lines += [b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Key: " + key, b"Sec-WebSocket-Version: 13"]
    for name, value in headers or ():
        lines.append(_b(name) + b": " + _b(value))
    request = b"\r\n".join(lines) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, head


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class HttpClient:
    """HTTP as a browser page on the server's own origin sends it: a cookie jar, the CSRF token
    in ``X-CSRFToken`` and the page's ``Origin`` on unsafe requests, Django's login form."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, data: dict | None = None, origin: str | None = "self") -> tuple[int, bytes]:
        headers = {"X-CSRFToken": self.cookie("csrftoken") or ""}
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        return self.request(path, data or {}, headers)

    def sign_in(self, username: str, password: str) -> None:
        status, page = self.request("/accounts/login/")
        assert status == 200, page[:500]
        found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found is not None, "no CSRF token on the login page"
        form = {"username": username, "password": password, "csrfmiddlewaretoken": found.group(1).decode()}
        status, _ = self.post("/accounts/login/", form)
        assert status == 200 and self.cookie("sessionid"), f"login of {username} failed"
