"""``manage.py wsguard_explain ORIGIN [--path P] [--host H]``: what the guard would decide."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from wsguard.origins import Origin, parse_origin
from wsguard.policy import HandshakeFacts, allowed_hosts, evaluate, get_snapshot
from wsguard.rejections import CLOSE_CODES


def default_host() -> str:
    for host in allowed_hosts():
        if host != "*" and not host.startswith("."):
            return host
    return "localhost"


def explain(origin: str, *, path: str = "/", host: str | None = None, secure: bool | None = None) -> list[str]:
    """The lines ``wsguard_explain`` prints; also used by the admin's "test an origin" view."""
    snapshot = get_snapshot()
    parsed = parse_origin(origin)
    if secure is None:
        # Assume wss, as deployed. Taking the scheme from the Origin instead made every origin on
        # the Host look same-origin (http://app.example.com "allowed" for a wss-only site).
        secure = True
    host = host or default_host()
    scope = {
        "type": "websocket",
        "path": path,
        "scheme": "wss" if secure else "ws",
        "headers": [(b"host", host.encode("latin-1", "replace"))]
        + ([(b"origin", origin.encode("latin-1", "replace"))] if origin else []),
    }
    facts = HandshakeFacts.from_scope(scope, snapshot.proxy_ssl_header)
    decision = evaluate(facts, snapshot)
    lines = [
        f"origin:   {origin!r}" + (f" -> {parsed.serialize()}" if isinstance(parsed, Origin) else ""),
        f"host:     {host!r} over {'wss' if secure else 'ws (--insecure)'}, path {path!r}",
        f"policy:   version {snapshot.version}, {len(snapshot.matcher)} pattern(s), "
        f"same-origin {'on' if snapshot.same_origin else 'off'}, missing origin: {snapshot.missing_origin}",
    ]
    if decision.allowed:
        lines.append(f"decision: ALLOW (trusted by {decision.trusted_by})")
        match = snapshot.matcher.match(parsed, path) if isinstance(parsed, Origin) else None
        if match is not None:
            scope_note = f", path prefix {match.rule.path_prefix!r}" if match.rule.path_prefix else ""
            lines.append(f"matched:  {match.pattern.text} ({match.rule.source}{scope_note})")
        if snapshot.report_only:
            lines.append("note:     REPORT_ONLY is on")
        return lines
    reason = str(decision.reason)
    lines.append(f"decision: DENY reason={reason} close={CLOSE_CODES[reason]}")
    if isinstance(parsed, Origin) and len(snapshot.matcher):
        for rule in snapshot.matcher.nearest(parsed):
            why = _why_not(parsed, rule.pattern, path, rule.path_prefix)
            lines.append(f"nearest:  {rule.pattern.text} ({rule.source}) - {why}")
    if snapshot.report_only:
        lines.append("note:     REPORT_ONLY is on: the handshake would be logged and let through")
    return lines


def _why_not(origin: Origin, pattern: Any, path: str, prefix: str) -> str:
    if pattern.matches(origin):
        return f"matches, but only under path prefix {prefix!r}"
    if pattern.scheme != origin.scheme:
        return f"scheme differs ({origin.scheme} vs {pattern.scheme})"
    if pattern.wildcard and origin.host == pattern.host:
        return "a wildcard never covers its own apex; list the apex too"
    host_ok = origin.host.endswith("." + pattern.host) if pattern.wildcard else origin.host == pattern.host
    if not host_ok:
        return f"host differs ({origin.host} vs {'*.' if pattern.wildcard else ''}{pattern.host})"
    return f"port differs ({origin.port} vs {pattern.port})"


class Command(BaseCommand):
    help = "Explain whether wsguard would accept a websocket handshake from ORIGIN, and why."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("origin", help='the Origin header value, e.g. "https://app.example.com"; "" for none')
        parser.add_argument("--path", default="/", help="the websocket path (default /)")
        parser.add_argument("--host", default=None, help="the Host header (default: first of ALLOWED_HOSTS)")
        scheme = parser.add_mutually_exclusive_group()
        scheme.add_argument(
            "--secure",
            dest="secure",
            action="store_const",
            const=True,
            default=None,
            help="the socket is wss:// (default)",
        )
        scheme.add_argument("--insecure", dest="secure", action="store_const", const=False, help="the socket is ws://")

    def handle(self, *args: Any, **options: Any) -> None:
        for line in explain(options["origin"], path=options["path"], host=options["host"], secure=options["secure"]):
            self.stdout.write(line)
