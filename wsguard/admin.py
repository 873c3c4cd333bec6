"""Admin for wsguard's models: trusted origins (with bulk enable/disable and a "test an origin"
view) and the read-only rejection audit (with "Trust the selected origins")."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from . import sync
from .models import HandshakeRejection, TrustedOrigin
from .origins import Origin, PatternError, parse_origin, parse_pattern

MATCH_EVERYTHING_MESSAGE = '"*" trusts every origin; it can only be set in settings.WSGUARD["ALLOWED_ORIGINS"].'


def pattern_errors(value: str) -> tuple[str, list[str]]:
    """The normalised pattern, or the system check's message and hint for a bad one."""
    try:
        pattern = parse_pattern(value)
    except PatternError as exc:
        return value, [exc.message, f"Hint: {exc.hint}"]
    if pattern.matches_everything:
        return value, [MATCH_EVERYTHING_MESSAGE, "Hint: list the origins your pages are served from instead."]
    return pattern.text, []


class TrustedOriginForm(forms.ModelForm):
    class Meta:
        model = TrustedOrigin
        fields = ("origin", "is_active", "path_prefix", "expires_at", "note")

    def clean_origin(self) -> str:
        normalised, errors = pattern_errors(self.cleaned_data.get("origin") or "")
        if errors:
            raise ValidationError(errors, code="invalid_origin_pattern")
        return normalised


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("expired", "Expired"), ("expiring", "Expires later"), ("never", "Never expires")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        value = self.value()
        if value == "expired":
            return queryset.filter(expires_at__lte=now)
        if value == "expiring":
            return queryset.filter(expires_at__gt=now)
        if value == "never":
            return queryset.filter(expires_at__isnull=True)
        return queryset


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("all", "Every websocket route"), ("path", "Under a path prefix")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "all":
            return queryset.filter(path_prefix="")
        if self.value() == "path":
            return queryset.exclude(path_prefix="")
        return queryset


class TestOriginForm(forms.Form):
    origin = forms.CharField(
        required=False, max_length=500, strip=False, help_text='The Origin header as sent; empty for "no Origin".'
    )
    path = forms.CharField(initial="/", max_length=500, help_text="The websocket path, e.g. /ws/chat/.")
    host = forms.CharField(required=False, max_length=300, help_text="The Host header; default: ALLOWED_HOSTS[0].")
    secure = forms.BooleanField(
        required=False, initial=True, help_text="The socket is wss:// (or behind a TLS proxy); untick for ws://."
    )


@admin.register(TrustedOrigin)
class TrustedOriginAdmin(admin.ModelAdmin):
    form = TrustedOriginForm
    list_display = ("origin", "is_active", "scope", "expires_at", "state", "note", "created_by", "updated_at")
    list_filter = ("is_active", ExpiryFilter, ScopeFilter)
    search_fields = ("origin", "path_prefix", "note")
    readonly_fields = ("created_by", "created_at", "updated_at")
    actions = ("enable_selected", "disable_selected")
    change_list_template = "admin/wsguard/trustedorigin/change_list.html"

    @admin.display(description="scope", ordering="path_prefix")
    def scope(self, obj: TrustedOrigin) -> str:
        return obj.path_prefix or "every route"

    @admin.display(description="state")
    def state(self, obj: TrustedOrigin) -> str:
        if not obj.is_active:
            return "disabled"
        return "expired" if obj.is_expired else "in force"

    def save_model(self, request: HttpRequest, obj: TrustedOrigin, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None and request.user.is_authenticated:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def _set_active(self, request: HttpRequest, queryset: QuerySet, active: bool) -> None:
        with transaction.atomic():
            changed = queryset.filter(is_active=not active).update(is_active=active, updated_at=timezone.now())
            if changed:
                # QuerySet.update sends no model signals: announce the change ourselves.
                sync.policy_changed()
        verb = "Enabled" if active else "Disabled"
        self.message_user(request, f"{verb} {changed} trusted origin(s); every worker applies it within seconds.")

    @admin.action(description="Enable the selected origins", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Disable the selected origins", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_active(request, queryset, False)

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_test"
        extra = [path("test-origin/", self.admin_site.admin_view(self.test_origin_view), name=name)]
        return extra + super().get_urls()

    def test_origin_view(self, request: HttpRequest) -> HttpResponse:
        """What the guard would decide for an origin, with the explain output."""
        from .management.commands.wsguard_explain import explain

        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = TestOriginForm(request.GET if "path" in request.GET else None)
        lines: list[str] | None = None
        if form.is_valid():
            sync.ensure_current()
            data = form.cleaned_data
            lines = explain(
                data["origin"], path=data["path"] or "/", host=data["host"] or None, secure=data["secure"]
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Test an origin",
            "form": form,
            "lines": lines,
            "allowed": bool(lines) and any(line.startswith("decision: ALLOW") for line in lines or ()),
        }
        return TemplateResponse(request, "admin/wsguard/trustedorigin/test_origin.html", context)


def trust_candidate(raw: str) -> str | None:
    """The pattern to trust for an Origin as it was sent, or None when it must never be trusted
    from the audit (malformed, ``null``, the overflow marker, or what only settings may hold)."""
    parsed = parse_origin(raw.encode("latin-1", "replace")) if raw else None
    if not isinstance(parsed, Origin):
        return None
    try:
        pattern = parse_pattern(parsed.serialize())
    except PatternError:
        return None
    return None if pattern.matches_everything or pattern.wildcard else pattern.text


@admin.register(HandshakeRejection)
class HandshakeRejectionAdmin(admin.ModelAdmin):
    list_display = ("origin_shown", "reason", "path", "count", "first_seen", "last_seen", "last_client")
    list_filter = ("reason", ("last_seen", admin.DateFieldListFilter))
    search_fields = ("origin", "path", "last_client")
    date_hierarchy = "last_seen"
    actions = ("trust_selected",)
    ordering = ("-last_seen",)

    @admin.display(description="origin", ordering="origin")
    def origin_shown(self, obj: HandshakeRejection) -> str:
        return obj.origin or "(none)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_trust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("wsguard.add_trustedorigin")

    @admin.action(description="Trust the selected origins", permissions=["trust"])
    def trust_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        candidates: dict[str, HandshakeRejection] = {}
        refused: list[str] = []
        for row in queryset.order_by("-count"):
            pattern = trust_candidate(row.origin)
            if pattern is None:
                refused.append(row.origin or "(none)")
            else:
                candidates.setdefault(pattern, row)
        existing = set(TrustedOrigin.objects.filter(origin__in=list(candidates)).values_list("origin", flat=True))
        created: list[str] = []
        with transaction.atomic():
            for pattern, row in candidates.items():
                if pattern in existing:
                    continue
                TrustedOrigin.objects.create(
                    origin=pattern,
                    created_by=request.user if request.user.is_authenticated else None,
                    note=f"Trusted from the rejection audit ({row.reason} on {row.path}, {row.count} denial(s)).",
                )
                created.append(pattern)
        if created:
            self.message_user(request, f"Now trusting {len(created)} origin(s): {', '.join(created)}.")
        if existing:
            url = reverse("admin:wsguard_trustedorigin_changelist")
            self.message_user(
                request,
                f"Already listed (enable them in {url} if disabled): {', '.join(sorted(existing))}.",
                messages.WARNING,
            )
        if refused:
            shown = ", ".join(sorted(set(refused))[:10])
            self.message_user(
                request,
                f"Not trusted: {len(set(refused))} malformed, null or missing origin(s) ({shown}).",
                messages.WARNING,
            )

from .auth import admin as _token_admin  # noqa: E402,F401
