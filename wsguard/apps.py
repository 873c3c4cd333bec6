from __future__ import annotations

from django.apps import AppConfig


class WsguardConfig(AppConfig):
    name = "wsguard"
    verbose_name = "WebSocket guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .revocation import install as install_revocation
        from .sync import start_process

        # Logout, password change, deactivation, token revocation close live sockets everywhere.
        install_revocation()

        # Admin-managed trusted origins and the rejection audit; the policy is loaded now, so that
        # a fresh worker's first handshake already sees the rows.
        start_process()
