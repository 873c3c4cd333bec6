"""``manage.py demo``: set up the demo chat and serve it, with an attacker's page beside it.

It migrates; creates the users ``alice`` and ``bob`` (and a superuser ``admin``) and the rooms
"Lobby" and "Random" if they are absent; then serves the chat with daphne on 127.0.0.1:8000 and
the hostile page (demo_project/hostile.py) on 127.0.0.1:8001 — same host, other port: the same
site, a different origin. ``--workers N`` runs N chat processes (ports 8000, 8002, 8003, …),
which needs ``REDIS_URL`` so that they share one channel layer.

Passwords: ``DEMO_PASSWORD`` sets them (on every run); otherwise one is generated when the users
are created and printed once.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from demo_project.chat.store import ensure_demo_rooms

DEMO_USERS = ("alice", "bob")
ADMIN_USER = "admin"
ROOT = Path(__file__).resolve().parents[3]


class Command(BaseCommand):
    help = "Set up the demo chat (users, rooms) and serve it with daphne, beside a hostile page on another port."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000, help="the chat (default 8000)")
        parser.add_argument("--hostile-port", type=int, default=8001, help="the attacker's page (default 8001)")
        parser.add_argument("--workers", type=int, default=1, help="chat processes; more than one needs REDIS_URL")
        parser.add_argument("--no-hostile", action="store_true", help="do not serve the attacker's page")
        parser.add_argument("--no-serve", action="store_true", help="set up only")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if options["workers"] > 1 and not getattr(settings, "REDIS_URL", ""):
            raise CommandError(
                "Several workers need one shared channel layer and cache: set REDIS_URL (and DATABASE_URL for "
                "PostgreSQL), e.g. REDIS_URL=redis://127.0.0.1:6379/0."
            )
        call_command("migrate", interactive=False, verbosity=0)
        self.set_up()
        if options["no_serve"]:
            return
        self.serve(options)

    def set_up(self) -> None:
        users = get_user_model()
        chosen = os.environ.get("DEMO_PASSWORD", "")
        generated = secrets.token_urlsafe(9)
        created: list[str] = []
        with transaction.atomic():
            for name in (*DEMO_USERS, ADMIN_USER):
                user = users.objects.filter(username=name).first()
                if user is None:
                    user = users(username=name)
                    created.append(name)
                elif not chosen:
                    continue
                user.set_password(chosen or generated)
                if name == ADMIN_USER:
                    user.is_staff = user.is_superuser = True
                user.save()
            rooms = ensure_demo_rooms()
        self.stdout.write(f"Database ready: rooms {', '.join(room.title for room in rooms)}.")
        if chosen:
            self.stdout.write(f"Users {', '.join((*DEMO_USERS, ADMIN_USER))}: password from DEMO_PASSWORD.")
        elif created:
            self.stdout.write(
                self.style.WARNING(
                    f"Created {', '.join(created)} with the password  {generated}  (shown once; "
                    "set DEMO_PASSWORD to choose one)."
                )
            )
        else:
            self.stdout.write("Users alice, bob and admin exist; set DEMO_PASSWORD to reset their password.")

    def serve(self, options: dict[str, Any]) -> None:
        host, port, hostile_port = options["host"], options["port"], options["hostile_port"]
        extra_ports = [p for p in range(port + 1, port + 100) if p != hostile_port][: options["workers"] - 1]
        children: list[subprocess.Popen] = []
        env = {**os.environ}
        env.setdefault("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)
        try:
            if not options["no_hostile"]:
                hostile_env = {**env, "DEMO_HOSTILE_TARGET": f"ws://{host}:{port}/ws/chat/lobby/"}
                children.append(self._daphne(host, hostile_port, "demo_project.hostile:application", hostile_env))
            for extra in extra_ports:
                children.append(self._daphne(host, extra, "demo_project.asgi:application", env))
            self.stdout.write(f"Chat:           http://{host}:{port}/  (sign in as alice or bob)")
            for extra in extra_ports:
                self.stdout.write(f"Chat worker:    http://{host}:{extra}/")
            if not options["no_hostile"]:
                self.stdout.write(
                    f"Attacker page:  http://{host}:{hostile_port}/  (open it in the browser where you are signed in)"
                )
            self.stdout.write("Ctrl-C stops everything.")
            self.stdout.flush()
            from daphne.cli import CommandLineInterface

            CommandLineInterface().run(["-b", host, "-p", str(port), "demo_project.asgi:application"])
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _daphne(self, host: str, port: int, app: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), app], cwd=ROOT, env=env
        )
