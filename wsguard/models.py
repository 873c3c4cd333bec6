"""wsguard's models: admin-managed trusted origins, API tokens, and the aggregated rejection audit."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .origins import PatternError, parse_pattern


def validate_origin_pattern(value: str) -> None:
    try:
        parse_pattern(value)
    except PatternError as exc:
        raise ValidationError(f"{exc.message} {exc.hint}", code="invalid_origin_pattern") from None


def validate_path_prefix(value: str) -> None:
    if value and not value.startswith("/"):
        raise ValidationError("A path prefix starts with '/', e.g. /ws/chat/.", code="invalid_path_prefix")
    if any(c.isspace() or c in "?#" for c in value):
        raise ValidationError("A path prefix has no spaces, query or fragment.", code="invalid_path_prefix")


class TrustedOriginQuerySet(models.QuerySet["TrustedOrigin"]):
    def in_force(self, now: object = None) -> TrustedOriginQuerySet:
        now = now or timezone.now()
        return self.filter(is_active=True).filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class TrustedOrigin(models.Model):
    """An origin pattern trusted at run time, optionally only under a path prefix and until a time."""

    origin = models.CharField(
        max_length=300,
        unique=True,
        validators=[validate_origin_pattern],
        help_text='A pattern as an Origin header is written: "https://app.example.com", '
        '"https://*.example.com", "http://localhost:*".',
    )
    is_active = models.BooleanField(default=True)
    path_prefix = models.CharField(
        max_length=200,
        blank=True,
        default="",
        validators=[validate_path_prefix],
        help_text="Only websocket paths starting with this prefix; blank for every route.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Trust ends at this time; blank for never.")
    note = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TrustedOriginQuerySet.as_manager()

    class Meta:
        ordering = ["origin"]
        verbose_name = "trusted origin"

    def __str__(self) -> str:
        return self.origin + (f" (under {self.path_prefix})" if self.path_prefix else "")

    def clean(self) -> None:
        super().clean()
        try:
            self.origin = parse_pattern(self.origin).text
        except PatternError:
            pass  # reported by the field validator with its hint

    def save(self, *args: object, **kwargs: object) -> None:
        # Stored normalised (punycode, lower case, default port dropped) so uniqueness means
        # "the same origin", whatever way it was typed.
        self.origin = parse_pattern(self.origin).text
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class ApiToken(models.Model):
    """A bearer token for non-browser clients. Only a hash of the secret is stored; the public
    ``prefix`` identifies the token in lists and logs."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wsguard_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class HandshakeRejection(models.Model):
    """One row per (origin as sent, reason, path): how often, first and last seen, last client."""

    origin = models.CharField(max_length=255, blank=True, default="", help_text="As sent, escaped and truncated.")
    reason = models.CharField(max_length=40)
    path = models.CharField(max_length=255)
    count = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_client = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-last_seen"]
        verbose_name = "handshake rejection"
        constraints = [
            models.UniqueConstraint(fields=["origin", "reason", "path"], name="wsguard_rejection_unique_key"),
        ]
        indexes = [models.Index(fields=["last_seen"], name="wsguard_rejection_last_seen")]

    def __str__(self) -> str:
        return f"{self.reason} {self.origin or '-'} {self.path} x{self.count}"
