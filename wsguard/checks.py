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
    raw = _wsguard_raw()
    if isinstance(raw, dict) and isinstance(raw.get("ALLOWED_ORIGINS"), (list, tuple)):
        for item in raw["ALLOWED_ORIGINS"]:
            try:
                pattern = parse_pattern(item)
            except PatternError:
                continue
            if pattern.matches_everything:
                messages.append(
                    checks.Warning(
                        'ALLOWED_ORIGINS contains "*": every origin is trusted and the guard only checks Host.',
                        hint="List the origins your pages are served from instead.",
                        id="wsguard.W001",
                    )
                )
    return messages


@checks.register(checks.Tags.security, deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E004 the match-everything pattern in production; W002 report-only mode in production."""
    raw = _wsguard_raw()
    messages: list[checks.CheckMessage] = []
    if not isinstance(raw, dict):
        return messages
    origins = raw.get("ALLOWED_ORIGINS")
    if isinstance(origins, (list, tuple)) and "*" in origins:
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
