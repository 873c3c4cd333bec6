"""``manage.py demo``: migrate, then serve the demo on 127.0.0.1:8000 with daphne."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Set up the demo database and serve the demo with daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--no-serve", action="store_true", help="set up only")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready.")
        if options["no_serve"]:
            return
        from daphne.cli import CommandLineInterface

        self.stdout.write(f"Serving the demo on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)")
        CommandLineInterface().run(
            ["-b", options["host"], "-p", str(options["port"]), "demo_project.asgi:application"]
        )
