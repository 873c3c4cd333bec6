"""``manage.py chat_client ROOM --token TOKEN``: join a chat room from the command line.

A non-browser client: it sends no ``Origin`` header and no cookie, and authenticates with an API
token (``manage.py wsguard_token create alice`` makes one). The demo's ``WSGUARD["MISSING_ORIGIN"]``
is ``"token"``, so wsguard admits a handshake without an Origin only when an API token
authenticates it.

    manage.py chat_client lobby --token "$TOKEN"                 # prints the history, then follows the room;
                                                                 # lines typed on stdin are sent
    manage.py chat_client lobby --token "$TOKEN" --send "hello"  # sends, waits for the ack, exits

The token can also come from the ``DEMO_TOKEN`` environment variable (kept out of ``ps`` output).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

CLOSE_MEANINGS = {
    1000: "closed normally",
    1001: "server going away",
    1009: "message too big",
    1011: "server error",
    4401: "credentials refused or revoked",
    4403: "origin or host not trusted",
    4404: "no such room",
    4429: "rate limited",
}


def safe(text: object) -> str:
    """Render server-sent text for a terminal: no escape sequences reach it."""
    value = str(text)
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in value)


class Command(BaseCommand):
    help = "Join a demo chat room with an API token and no Origin header (the MISSING_ORIGIN='token' path)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="room slug, e.g. lobby")
        parser.add_argument("--token", default=os.environ.get("DEMO_TOKEN", ""), help="API token (or DEMO_TOKEN)")
        parser.add_argument(
            "--url", default="ws://127.0.0.1:8000", help="the chat server (default ws://127.0.0.1:8000)"
        )
        parser.add_argument("--send", action="append", default=[], help="send this message and exit (repeatable)")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")

    def handle(self, *args: Any, **options: Any) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        token = options["token"]
        if not token:
            raise CommandError(
                "An API token is required: --token TOKEN or DEMO_TOKEN (manage.py wsguard_token create)."
            )
        url = f"{options['url'].rstrip('/')}/ws/chat/{options['room']}/"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            connection = connect(url, additional_headers=headers, open_timeout=options["timeout"], origin=None)
        except InvalidStatus as exc:
            reason = exc.response.headers.get("x-wsguard-reason", "")
            raise CommandError(
                f"The server refused the handshake: HTTP {exc.response.status_code}"
                + (f" ({reason})" if reason else "")
            ) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise CommandError(f"Could not connect to {url}: {exc}") from None

        with connection:
            try:
                history = self.receive(connection, options["timeout"])
                if history.get("type") != "history":
                    raise CommandError(f"Unexpected first frame: {safe(history)[:200]}")
                self.stdout.write(
                    f"Joined {safe(history['room']['title'])} as {safe(history['you'])}; "
                    f"last {len(history['messages'])} message(s):"
                )
                for message in history["messages"]:
                    self.print_message(message)
                if options["send"]:
                    for text in options["send"]:
                        self.send_and_wait(connection, text, options["timeout"])
                    return
                self.follow(connection)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                raise CommandError(f"Closed by the server: {code} ({CLOSE_MEANINGS.get(code, 'closed')})") from None

    def receive(self, connection: Any, timeout: float | None) -> dict:
        frame = connection.recv(timeout=timeout)
        try:
            data = json.loads(frame)
        except (TypeError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def print_message(self, message: dict) -> None:
        self.stdout.write(
            f"[{safe(message.get('at', ''))[11:19]}] {safe(message.get('author'))}: {safe(message.get('text'))}"
        )

    def send_and_wait(self, connection: Any, text: str, timeout: float) -> None:
        nonce = secrets.token_hex(16)
        connection.send(json.dumps({"type": "message", "text": text, "nonce": nonce}))
        for _ in range(1000):
            frame = self.receive(connection, timeout)
            kind = frame.get("type")
            if kind == "ack" and frame.get("nonce") == nonce:
                self.stdout.write(f"Sent and stored (id {frame.get('id')}).")
                return
            if kind == "error" and frame.get("nonce") == nonce:
                raise CommandError(f"Refused: {safe(frame.get('detail') or frame.get('code'))}")
            if kind == "message":
                self.print_message(frame["message"])
        raise CommandError("No acknowledgement from the server.")

    def follow(self, connection: Any) -> None:
        def read_stdin() -> None:
            for line in sys.stdin:
                if line.strip():
                    connection.send(json.dumps({"type": "message", "text": line.rstrip("\n")}))

        if sys.stdin is not None and sys.stdin.isatty():
            self.stdout.write("Type a line to send it; Ctrl-C leaves.")
            threading.Thread(target=read_stdin, daemon=True).start()
        try:
            while True:
                frame = self.receive(connection, None)
                if frame.get("type") == "message":
                    self.print_message(frame["message"])
                elif frame.get("type") == "presence":
                    self.stdout.write(f"Online: {', '.join(safe(u) for u in frame.get('users', []))}")
                elif frame.get("type") == "error":
                    self.stderr.write(f"Error: {safe(frame.get('detail') or frame.get('code'))}")
        except KeyboardInterrupt:
            return
