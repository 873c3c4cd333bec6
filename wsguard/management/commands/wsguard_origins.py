"""``manage.py wsguard_origins list|add|disable|remove|purge-audit``: admin-managed trusted origins
from the shell and deploy scripts. Every change is announced to all workers (cache version key and
channel-layer broadcast) when it commits, exactly as an admin edit is."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from wsguard import audit
from wsguard.models import TrustedOrigin
from wsguard.origins import PatternError, parse_pattern

_DURATION_RE = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2h``, ``30m``, ``7d`` (from now) or an ISO 8601 time (UTC unless it names a zone)."""
    now = now or timezone.now()
    match = _DURATION_RE.fullmatch(value.strip())
    if match:
        return now + dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    parsed = parse_datetime(value.strip())
    if parsed is None:
        raise CommandError(f"--expires {value!r}: write a duration such as 2h, 30m, 7d or an ISO time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


def normalise(origin: str) -> str:
    """The stored form of a pattern, or a CommandError with the system check's message and hint."""
    try:
        pattern = parse_pattern(origin)
    except PatternError as exc:
        raise CommandError(f"{origin!r}: {exc.message} {exc.hint}") from None
    if pattern.matches_everything:
        raise CommandError('"*" trusts every origin; it can only be set in settings.WSGUARD["ALLOWED_ORIGINS"].')
    return pattern.text


def state_of(row: TrustedOrigin) -> str:
    if not row.is_active:
        return "disabled"
    if row.is_expired:
        return "expired"
    return "in force"


class Command(BaseCommand):
    help = "List, add, disable or remove admin-managed trusted origins, and purge the rejection audit."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="the trusted origins (in force unless --all)")
        listing.add_argument("--all", action="store_true", help="include disabled and expired rows")
        add = sub.add_parser("add", help="trust ORIGIN (re-enables and updates an existing row)")
        add.add_argument("origin")
        add.add_argument("--path", default="", help="only websocket paths under this prefix (default: every route)")
        add.add_argument("--expires", default=None, help="a duration (2h, 7d) or an ISO time; default never")
        add.add_argument("--note", default=None)
        disable = sub.add_parser("disable", help="stop trusting ORIGIN (kept for the record)")
        disable.add_argument("origin")
        remove = sub.add_parser("remove", help="delete ORIGIN")
        remove.add_argument("origin")
        purge = sub.add_parser("purge-audit", help="delete rejection-audit rows not seen recently")
        purge.add_argument("--days", type=int, default=None, help="default: WSGUARD['AUDIT_RETENTION_DAYS']")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list(options["all"])
        elif action == "add":
            self._add(options)
        elif action == "disable":
            self._disable(options["origin"])
        elif action == "remove":
            self._remove(options["origin"])
        elif action == "purge-audit":
            days = options["days"]
            if days is not None and days < 0:
                raise CommandError("--days must be 0 or more.")
            deleted = audit.purge(days)
            self.stdout.write(f"Deleted {deleted} rejection-audit row(s).")

    def _list(self, everything: bool) -> None:
        rows = TrustedOrigin.objects.all() if everything else TrustedOrigin.objects.in_force()
        count = 0
        for row in rows.order_by("origin", "path_prefix"):
            count += 1
            expires = row.expires_at.isoformat() if row.expires_at else "never"
            self.stdout.write(
                f"{row.origin}\t{state_of(row)}\tpath={row.path_prefix or '*'}\texpires={expires}"
                + (f"\tnote={row.note}" if row.note else "")
            )
        if not count:
            self.stdout.write("No trusted origins." if everything else "No trusted origins in force.")

    def _add(self, options: dict[str, Any]) -> None:
        origin = normalise(options["origin"])
        expires = parse_expiry(options["expires"]) if options["expires"] else None
        with transaction.atomic():
            row = TrustedOrigin.objects.select_for_update().filter(origin=origin).first()
            created = row is None
            if row is None:
                row = TrustedOrigin(origin=origin)
            row.is_active = True
            row.path_prefix = options["path"]
            row.expires_at = expires
            if options["note"] is not None:
                row.note = options["note"]
            try:
                row.full_clean(validate_unique=False)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
            row.save()
        self.stdout.write(f"{'Added' if created else 'Updated'} {row}.")

    def _get(self, origin: str) -> TrustedOrigin:
        try:
            return TrustedOrigin.objects.get(origin=normalise(origin))
        except TrustedOrigin.DoesNotExist:
            raise CommandError(f"{origin!r} is not a trusted origin (see `wsguard_origins list --all`).") from None

    def _disable(self, origin: str) -> None:
        row = self._get(origin)
        if row.is_active:
            row.is_active = False
            row.save(update_fields=["is_active", "updated_at"])
        self.stdout.write(f"Disabled {row}.")

    def _remove(self, origin: str) -> None:
        row = self._get(origin)
        row.delete()
        self.stdout.write(f"Removed {origin}.")
