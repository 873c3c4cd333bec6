"""System checks. Ids are unique forever and listed in docs/checks.md; never reuse one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from . import conf
from .origins import PatternError, parse_pattern


def _wsguard_raw() -> Any:
    return getattr(settings, conf.SETTING_NAME, None)


@checks.register(checks.Tags.security)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 bad origin pattern, E002 bad or unknown key/value, E003 bad MISSING_ORIGIN;
    W001 the match-everything pattern."""
    messages: list[checks.CheckMessage] = [
        checks.Error(problem.message, hint=problem.hint, id=problem.id)
        for problem in conf.collect_problems(_wsguard_raw())
    ]
    if _has_star(_wsguard_raw()):
        messages.append(
            checks.Warning(
                'ALLOWED_ORIGINS contains "*": every origin is trusted and the guard only checks Host.',
                hint="List the origins your pages are served from instead.",
                id="wsguard.W001",
            )
        )
    return messages


def _has_star(raw: Any) -> bool:
    """Whether ALLOWED_ORIGINS holds the match-everything pattern. Never raises, whatever the
    setting holds: a check must report a bad configuration, not crash ``manage.py check``."""
    origins = raw.get("ALLOWED_ORIGINS") if isinstance(raw, dict) else None
    if not isinstance(origins, (list, tuple)):
        return False
    for item in origins:
        try:
            if parse_pattern(item).matches_everything:
                return True
        except PatternError:
            continue
    return False


@checks.register(checks.Tags.security, deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E004 the match-everything pattern in production; W002 report-only mode in production;
    W003 cookie-authenticated sockets without an Origin."""
    raw = _wsguard_raw()
    messages: list[checks.CheckMessage] = []
    if not isinstance(raw, dict):
        return messages
    if _has_star(raw):
        messages.append(
            checks.Error(
                'ALLOWED_ORIGINS contains "*" in a deployment: any web page can open your sockets.',
                hint="List the origins your pages are served from instead.",
                id="wsguard.E004",
            )
        )
    if raw.get("REPORT_ONLY") is True:
        messages.append(
            checks.Warning(
                "REPORT_ONLY is on: denied handshakes are logged but let through.",
                hint="Turn it off once the logs show no legitimate origin being denied.",
                id="wsguard.W002",
            )
        )
    if raw.get("MISSING_ORIGIN") == "allow":
        messages.append(
            checks.Warning(
                'MISSING_ORIGIN is "allow": handshakes without an Origin may authenticate with cookies.',
                hint='Use "token" so that non-browser clients must present an API token.',
                id="wsguard.W003",
            )
        )
    return messages


_PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
_PROCESS_LOCAL_LAYERS = ("channels.layers.InMemoryChannelLayer",)


def _cache_alias() -> Any:
    raw = _wsguard_raw()
    alias = raw.get("CACHE_ALIAS", conf.DEFAULTS.get("CACHE_ALIAS", "default")) if isinstance(raw, dict) else None
    return alias if isinstance(alias, str) and alias else conf.DEFAULTS.get("CACHE_ALIAS", "default")


@checks.register(checks.Tags.caches, checks.Tags.security)
def check_policy_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010 CACHE_ALIAS names no configured cache (the policy version key lives there)."""
    alias = _cache_alias()
    if alias in getattr(settings, "CACHES", {}):
        return []
    return [
        checks.Error(
            f"WSGUARD CACHE_ALIAS {alias!r} is not in settings.CACHES: the trusted-origins version key "
            "cannot be read, so admin changes reach other workers only through broadcasts.",
            hint=f"Add a {alias!r} entry to CACHES (Redis when several workers run), or set CACHE_ALIAS to one.",
            id="wsguard.E010",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_policy_spans_workers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W010 process-local cache, W011 process-local channel layer: admin-managed origins and
    revocations would not reach every worker."""
    messages: list[checks.CheckMessage] = []
    backend = (getattr(settings, "CACHES", {}).get(_cache_alias()) or {}).get("BACKEND", "")
    if backend in _PROCESS_LOCAL_CACHES:
        messages.append(
            checks.Warning(
                f"The wsguard cache ({_cache_alias()!r}) is {backend.rsplit('.', 1)[-1]}, private to each process: "
                "a worker that misses a trusted-origin broadcast never catches up by polling.",
                hint="Use a shared cache such as django.core.cache.backends.redis.RedisCache (see docs/deployment.md).",
                id="wsguard.W010",
            )
        )
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    layer = (layers.get("default") or {}).get("BACKEND", "")
    if not layer or layer in _PROCESS_LOCAL_LAYERS:
        messages.append(
            checks.Warning(
                "The channel layer is "
                + (f"{layer.rsplit('.', 1)[-1]}, private to each process" if layer else "not configured")
                + ": trusted-origin changes and revocations reach other workers only by polling the cache, "
                "and other wsguard revocations not at all.",
                hint='Use channels_redis ("channels_redis.core.RedisChannelLayer") when several workers run.',
                id="wsguard.W011",
            )
        )
    return messages


@checks.register(checks.Tags.database, checks.Tags.security)
def check_trusted_origin_rows(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E011 stored TrustedOrigin rows the policy refuses (malformed, or "*"): they trust nothing.
    Runs with ``manage.py check --database default``."""
    if not databases:
        return []
    from django.db import DatabaseError

    from .models import TrustedOrigin

    messages: list[checks.CheckMessage] = []
    try:
        rows = list(TrustedOrigin.objects.in_force().values_list("pk", "origin")[:100000])
    except DatabaseError:
        return []
    for pk, origin in rows:
        try:
            pattern = parse_pattern(origin)
        except PatternError as exc:
            messages.append(
                checks.Error(f"Trusted origin #{pk} {origin!r}: {exc.message}", hint=exc.hint, id="wsguard.E011")
            )
            continue
        if pattern.matches_everything:
            messages.append(
                checks.Error(
                    f'Trusted origin #{pk} is "*"; the policy ignores it.',
                    hint='Only settings.WSGUARD["ALLOWED_ORIGINS"] may hold "*"; list the origins instead.',
                    id="wsguard.E011",
                )
            )
    return messages


# --- the authentication step: the websocket application tree (wsguard.E023-E025, W020-W021) ---

_MAX_APP_DEPTH = 64
_WRAPPER_ATTRIBUTES = ("inner", "application", "app")


def _websocket_app() -> Any:
    """The websocket application of ``settings.ASGI_APPLICATION``, or None when there is none."""
    from django.utils.module_loading import import_string

    dotted = getattr(settings, "ASGI_APPLICATION", None)
    if not isinstance(dotted, str):
        return None
    try:
        app = import_string(dotted)
    except Exception:
        return None
    mapping = getattr(app, "application_mapping", None)
    if isinstance(mapping, dict):
        return mapping.get("websocket")
    return app


def _walk_websocket_app(app: Any, route: str, above: frozenset[str], found: list[tuple[str, str]], depth: int) -> None:
    """Record ``(kind, route)`` problems in ``found``; ``above`` names what wraps ``app``."""
    from channels.auth import AuthMiddleware
    from channels.routing import URLRouter
    from channels.security.websocket import OriginValidator

    from .middleware import HandshakeAuth, OriginGuard, RouteGuard

    if app is None or depth > _MAX_APP_DEPTH:
        return
    if isinstance(app, OriginGuard):
        above = above | {"origin"}
    elif isinstance(app, OriginValidator):
        above = above | {"channels-origin"}
    elif isinstance(app, (HandshakeAuth, AuthMiddleware)):
        if "origin" not in above:
            found.append(("session-unguarded" if "channels-origin" not in above else "session-channels-only", route))
        above = above | {"auth"}
    elif isinstance(app, RouteGuard) and "auth" not in above:
        found.append(("route-guard-alone", route))
    if isinstance(app, URLRouter):
        for entry in app.routes:
            pattern = getattr(entry, "pattern", None)
            _walk_websocket_app(
                getattr(entry, "callback", None), route + str(pattern or ""), above, found, depth + 1
            )
        return
    for attribute in _WRAPPER_ATTRIBUTES:
        inner = getattr(app, attribute, None)
        if inner is not None and callable(inner):
            _walk_websocket_app(inner, route, above, found, depth + 1)
            return
    if "origin" not in above and "channels-origin" not in above:
        found.append(("route-unguarded", route or "/"))


@checks.register(checks.Tags.security)
def check_websocket_stack(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E023 session authentication with no Origin check in front; E024 ``guard()`` with no
    authentication above it; E025 an AUTHENTICATORS entry that cannot be loaded; W020 a websocket
    route no Origin guard covers; W021 session authentication behind Channels' OriginValidator only."""
    from django.core.exceptions import ImproperlyConfigured

    messages: list[checks.CheckMessage] = []
    raw = _wsguard_raw()
    paths = raw.get("AUTHENTICATORS") if isinstance(raw, dict) else None
    if isinstance(paths, (list, tuple)) and all(isinstance(p, str) for p in paths):
        from .auth import load_authenticators

        try:
            load_authenticators(paths)
        except ImproperlyConfigured as exc:
            messages.append(
                checks.Error(
                    str(exc).removeprefix("WSGUARD: "),
                    hint="Fix the dotted path, or remove AUTHENTICATORS to use the defaults.",
                    id="wsguard.E025",
                )
            )
    found: list[tuple[str, str]] = []
    try:
        _walk_websocket_app(_websocket_app(), "", frozenset(), found, 0)
    except Exception:  # a check never crashes on an application it cannot read
        return messages
    for kind, route in found:
        if kind == "session-unguarded":
            messages.append(
                checks.Error(
                    f"Session authentication is reachable on websocket route {route!r} with no Origin check in front: "
                    "any web page a logged-in user visits can open that socket as the user (CSWSH).",
                    hint='Wrap the websocket router in wsguard.GuardStack: {"websocket": GuardStack(URLRouter(...))}.',
                    id="wsguard.E023",
                )
            )
        elif kind == "route-guard-alone":
            messages.append(
                checks.Error(
                    f"wsguard.guard() on websocket route {route!r} has no wsguard authentication above it; every "
                    "handshake there raises ValueError.",
                    hint="Wrap the websocket router in wsguard.GuardStack(URLRouter(...)).",
                    id="wsguard.E024",
                )
            )
        elif kind == "session-channels-only":
            messages.append(
                checks.Warning(
                    f"Session authentication on websocket route {route!r} is behind Channels' OriginValidator only: "
                    "no strict Origin parsing, no Host check against DNS rebinding, no revocation of live sockets.",
                    hint="Replace AllowedHostsOriginValidator(AuthMiddlewareStack(...)) with wsguard.GuardStack(...) "
                    "(docs/migrating.md).",
                    id="wsguard.W021",
                )
            )
        else:
            messages.append(
                checks.Warning(
                    f"Websocket route {route!r} is not covered by any Origin guard.",
                    hint="Wrap the websocket router in wsguard.GuardStack(URLRouter(...)).",
                    id="wsguard.W020",
                )
            )
    return messages
