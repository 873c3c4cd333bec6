"""``manage.py wsguard_probe URL``: probe any WebSocket endpoint for Cross-Site WebSocket Hijacking.

Exit status: 0 safe, 2 vulnerable, 3 inconclusive, 1 usage or connection error. See docs/probe.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsguard.probe import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY,
    Overall,
    ProbeError,
    parse_header_option,
    parse_target,
    render_table,
    report_json,
    run_probe,
)


class Command(BaseCommand):
    help = (
        "Send a fixed battery of WebSocket handshakes with forged, missing, duplicated and look-alike Origin "
        "headers to URL (ws:// or wss://) and report which were upgraded. Connects only to URL's host and port."
    )
    # The probe does not depend on this project's configuration; it may target another server entirely.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="the websocket endpoint, e.g. ws://127.0.0.1:8000/ws/echo/")
        parser.add_argument(
            "--origin", default=None, help="the origin the endpoint trusts (default: the URL's own origin)"
        )
        parser.add_argument(
            "--cookie", default=None, help='a Cookie header value, e.g. "sessionid=..." (never printed)'
        )
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="an extra request header; repeatable (Cookie and Authorization values are never printed)",
        )
        parser.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
        parser.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds per request (default {DEFAULT_TIMEOUT:g})"
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=DEFAULT_CONCURRENCY,
            help=f"requests in flight at once (default {DEFAULT_CONCURRENCY}, at most {MAX_CONCURRENCY})",
        )
        parser.add_argument("--insecure", action="store_true", help="wss://: do not verify the TLS certificate")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = parse_target(options["url"], options["origin"])
            headers = [parse_header_option(text) for text in options["header"]]
            report = asyncio.run(
                run_probe(
                    target,
                    cookie=options["cookie"],
                    extra_headers=headers,
                    request_timeout=options["timeout"],
                    concurrency=options["concurrency"],
                    verify=not options["insecure"],
                )
            )
        except ProbeError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report_json(report), indent=2))
        else:
            for line in render_table(report, headers):
                self.stdout.write(line)
        if report.overall is not Overall.SAFE:
            raise SystemExit(int(report.overall))
