"""Admin for API tokens: created with the secret shown once, listed by prefix, revoked in bulk.

Imported from ``wsguard/admin.py``. A token's secret is generated on save and shown in a message
on the next page only; the database keeps its hash.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import ApiToken
from .tokens import PREFIX_BYTES, SECRET_BYTES, TOKEN_PREFIX, hash_secret


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "is_active", "created_at", "expires_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("prefix", "name", "user__username")
    raw_id_fields = ("user",)
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("user", "name", "expires_at", "is_active", "prefix", "created_at", "last_used_at")
    actions = ("revoke",)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        import secrets

        obj.prefix = secrets.token_hex(PREFIX_BYTES)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        obj.secret_hash = hash_secret(secret)
        super().save_model(request, obj, form, change)
        messages.warning(
            request,
            f"The new token is {TOKEN_PREFIX}_{obj.prefix}_{secret} — copy it now: it is shown only this once.",
        )

    @admin.action(description="Revoke the selected tokens (their open sockets close)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(is_active=True):
            token.is_active = False
            token.save(update_fields=["is_active"])
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
