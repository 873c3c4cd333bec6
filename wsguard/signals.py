"""Signals wsguard sends. Receivers run synchronously on the event loop: keep them cheap and hand
any I/O to a queue (as wsguard's own audit does)."""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: rejection (wsguard.rejections.Rejection)
handshake_rejected = Signal()
# kwargs: scope_info (dict: path, client, origin, trusted_by)
handshake_accepted = Signal()
# kwargs: reason (str), close_code (int), path (str), client (str | None)
socket_revoked = Signal()
