"""``manage.py wsguard_explain``: what the guard would decide for an Origin, and why."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

POLICY = {"ALLOWED_ORIGINS": ["https://app.example.com", "https://*.partner.example", "http://localhost:8000"]}
HOSTS = ["app.example.com", "localhost"]


def explain(*args: str) -> str:
    out = StringIO()
    call_command("wsguard_explain", *args, stdout=out)
    return out.getvalue()


def field(output: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(f"{name}:")]


@pytest.fixture(autouse=True)
def policy():
    with override_settings(WSGUARD=POLICY, ALLOWED_HOSTS=HOSTS):
        yield


@pytest.mark.parametrize(
    "origin, pattern",
    [
        ("https://app.example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("HTTPS://APP.EXAMPLE.COM", "https://app.example.com"),
        ("https://a.partner.example", "https://*.partner.example"),
        ("https://a.b.partner.example", "https://*.partner.example"),
        ("http://localhost:8000", "http://localhost:8000"),
    ],
)
def test_allowed_names_the_matching_pattern(origin, pattern):
    output = explain(origin)
    assert field(output, "decision") == ["ALLOW (trusted by settings)"]
    assert field(output, "matched") == [f"{pattern} (settings)"]
    assert "nearest" not in output


def test_allowed_by_same_origin_names_no_pattern():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": []}):
        output = explain("https://app.example.com", "--host", "app.example.com")
    assert field(output, "decision") == ["ALLOW (trusted by same-origin)"]
    assert field(output, "matched") == []


@pytest.mark.parametrize(
    "origin, reason, nearest",
    [
        ("https://evil.example", "origin-untrusted", "https://*.partner.example (settings) - host differs"),
        ("http://app.example.com", "origin-untrusted", "https://app.example.com (settings) - scheme differs"),
        ("https://app.example.com:8443", "origin-untrusted", "https://app.example.com (settings) - port differs"),
        (
            "https://partner.example",
            "origin-untrusted",
            "https://*.partner.example (settings) - a wildcard never covers its own apex",
        ),
        ("https://app.example.co", "origin-untrusted", "https://app.example.com (settings) - host differs"),
        ("http://localhost:8001", "origin-untrusted", "http://localhost:8000 (settings) - port differs"),
    ],
)
def test_denied_gives_the_reason_code_and_the_nearest_pattern(origin, reason, nearest):
    output = explain(origin)
    assert field(output, "decision") == [f"DENY reason={reason} close=4403"]
    (line,) = field(output, "nearest")
    assert line.startswith(nearest)


@pytest.mark.parametrize(
    "origin, reason",
    [
        ("null", "origin-opaque"),
        ("file://x", "origin-opaque"),
        ("https://app.example.com/", "origin-malformed"),
        ("https://app.example.com, https://evil.example", "origin-malformed"),
        ("https://app.example.com:0", "origin-malformed"),
        ("", "origin-missing"),
    ],
)
def test_unparseable_or_missing_origin_is_denied_without_a_nearest_pattern(origin, reason):
    output = explain(origin)
    assert field(output, "decision") == [f"DENY reason={reason} close=4403"]
    assert field(output, "nearest") == []


def test_untrusted_host_is_reported():
    output = explain("https://app.example.com", "--host", "rebind.attacker.example")
    assert field(output, "decision") == ["DENY reason=host-untrusted close=4403"]


def test_output_is_normalised_and_names_the_policy():
    output = explain("HTTPS://App.Example.Com:443", "--path", "/ws/chat/")
    assert field(output, "origin") == ["'HTTPS://App.Example.Com:443' -> https://app.example.com"]
    (policy_line,) = field(output, "policy")
    assert "3 pattern(s)" in policy_line
    assert "path '/ws/chat/'" in field(output, "host")[0]


def test_report_only_note_on_a_denial():
    with override_settings(WSGUARD={**POLICY, "REPORT_ONLY": True}):
        output = explain("https://evil.example")
    assert field(output, "decision")[0].startswith("DENY")
    assert field(output, "note") == ["REPORT_ONLY is on: the handshake would be logged and let through"]


def test_report_only_note_on_an_allow():
    with override_settings(WSGUARD={**POLICY, "REPORT_ONLY": True}):
        output = explain("https://app.example.com")
    assert field(output, "note") == ["REPORT_ONLY is on"]


def test_no_report_only_note_when_enforcing():
    assert field(explain("https://evil.example"), "note") == []


def test_path_scoped_rule_is_explained():
    from wsguard import policy
    from wsguard.origins import Rule, parse_pattern

    scoped = Rule(parse_pattern("https://scoped.example"), path_prefix="/ws/chat/", source="admin:7")
    policy.install_snapshot(policy.build_snapshot([scoped], version="test"))
    try:
        allowed = explain("https://scoped.example", "--path", "/ws/chat/room/")
        denied = explain("https://scoped.example", "--path", "/ws/admin/")
    finally:
        policy.install_snapshot(None)  # type: ignore[arg-type]
    assert field(allowed, "matched") == ["https://scoped.example (admin:7, path prefix '/ws/chat/')"]
    assert field(denied, "decision")[0].startswith("DENY reason=origin-untrusted")
    assert "only under path prefix '/ws/chat/'" in field(denied, "nearest")[0]


def test_the_socket_is_assumed_wss_so_http_on_the_same_host_is_not_same_origin():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": []}):
        assumed = explain("http://app.example.com", "--host", "app.example.com")
        insecure = explain("http://app.example.com", "--host", "app.example.com", "--insecure")
        secure = explain("https://app.example.com", "--host", "app.example.com", "--secure")
    assert field(assumed, "decision") == ["DENY reason=origin-untrusted close=4403"]
    assert field(insecure, "decision") == ["ALLOW (trusted by same-origin)"]
    assert "over ws (--insecure)" in field(insecure, "host")[0]
    assert field(secure, "decision") == ["ALLOW (trusted by same-origin)"]
