"""wsguard: Cross-Site WebSocket Hijacking protection for Django Channels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"
__all__ = ["GuardStack", "OriginGuard", "guard"]

if TYPE_CHECKING:
    from .middleware import GuardStack, OriginGuard, guard


def __getattr__(name: str) -> Any:
    # Lazy, so that `import wsguard` (e.g. from INSTALLED_APPS) does not import Channels and
    # Django internals before settings are configured.
    if name in ("GuardStack", "OriginGuard", "guard"):
        from . import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module 'wsguard' has no attribute {name!r}")
