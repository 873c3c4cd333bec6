"""``manage.py wsguard_token create USERNAME [--name N] [--expires 30d] | list [--user U] | revoke PREFIX...``

API tokens for non-browser clients. ``create`` prints the token once: only its hash is stored.
``revoke`` closes the token's open sockets on every worker (through the channel layer) once the
change commits, exactly as a revocation in the admin does.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from wsguard.auth.tokens import create_token
from wsguard.management.commands.wsguard_origins import parse_expiry
from wsguard.models import ApiToken


class Command(BaseCommand):
    help = "Create, list and revoke wsguard API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        create = commands.add_parser("create", help="Create a token for USERNAME and print it once.")
        create.add_argument("username")
        create.add_argument("--name", default="", help="What the token is for.")
        create.add_argument("--expires", help="A duration (2h, 30d, 4w) or an ISO time; default: never.")
        listing = commands.add_parser("list", help="List tokens (never their secrets).")
        listing.add_argument("--user", help="Only this user's tokens.")
        revoke = commands.add_parser("revoke", help="Revoke tokens by prefix; their sockets close.")
        revoke.add_argument("prefixes", nargs="+", metavar="PREFIX")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, *, username: str, name: str, expires: str | None, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        expires_at = parse_expiry(expires) if expires else None
        token, text = create_token(user, name=name, expires_at=expires_at)
        self.stdout.write(text)
        self.stderr.write(
            f"Created token {token.prefix} for {username}"
            + (f", expiring {expires_at.isoformat()}" if expires_at else "")
            + ". It is shown only this once."
        )

    def handle_list(self, *, user: str | None, **options: Any) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("-created_at")
        if user:
            tokens = tokens.filter(**{f"user__{get_user_model().USERNAME_FIELD}": user})
        for token in tokens:
            state = "revoked" if not token.is_active else "expired" if token.is_expired else "active"
            self.stdout.write(
                "\t".join(
                    [
                        token.prefix,
                        token.user.get_username(),
                        state,
                        token.name or "-",
                        token.created_at.isoformat(timespec="seconds"),
                        token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never",
                        token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never used",
                    ]
                )
            )

    def handle_revoke(self, *, prefixes: list[str], **options: Any) -> None:
        missing = [p for p in prefixes if not ApiToken.objects.filter(prefix=p).exists()]
        if missing:
            raise CommandError(f"No token with prefix {', '.join(missing)}; see `wsguard_token list`.")
        with transaction.atomic():
            for token in ApiToken.objects.filter(prefix__in=prefixes, is_active=True):
                token.is_active = False
                token.save(update_fields=["is_active"])  # post_save closes its sockets on commit
        self.stdout.write(f"Revoked {len(prefixes)} token(s).")
