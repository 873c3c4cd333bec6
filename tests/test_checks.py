"""System checks: called directly, and through ``manage.py check`` (and ``check --deploy``)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from wsguard import checks

# --- the check functions, called directly -------------------------------------------------------


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@pytest.mark.parametrize(
    "wsguard, expected_ids",
    [
        (None, []),
        ({}, []),
        ({"ALLOWED_ORIGINS": ["https://app.example.com", "https://*.example.com"]}, []),
        ({"ALLOWED_ORIGINS": ("https://app.example.com",)}, []),
        ({"ALLOWED_ORIGINS": ["app.example.com"]}, ["wsguard.E001"]),
        ({"ALLOWED_ORIGINS": "https://app.example.com"}, ["wsguard.E001"]),
        ({"ALLOWED_ORIGINS": ["https://*.github.io", "null", "https://ok.example"]}, ["wsguard.E001", "wsguard.E001"]),
        ({"ALLOWED_ORIGINS": [["https://app.example.com"]]}, ["wsguard.E001"]),
        ({"ALLOWED_ORIGINS": None}, ["wsguard.E001"]),
        ({"ALLOWED_ORGINS": []}, ["wsguard.E002"]),
        ({"SAME_ORIGIN": "yes"}, ["wsguard.E002"]),
        ({"REPORT_ONLY": 1}, ["wsguard.E002"]),
        ({"LOG_RATE": 0}, ["wsguard.E002"]),
        ({"LOG_BURST": 2.5}, ["wsguard.E002"]),
        ("not a dict", ["wsguard.E002"]),
        (["https://app.example.com"], ["wsguard.E002"]),
        ({"MISSING_ORIGIN": "maybe"}, ["wsguard.E003"]),
        ({"MISSING_ORIGIN": ["deny"]}, ["wsguard.E003"]),
        ({"ALLOWED_ORIGINS": ["*"]}, ["wsguard.W001"]),
        ({"ALLOWED_ORIGINS": ["*", "https://app.example.com"]}, ["wsguard.W001"]),
        ({"ALLOWED_ORIGINS": ["*", "*"]}, ["wsguard.W001"]),
        ({"ALLOWED_ORIGINS": [" *"]}, ["wsguard.E001"]),
        ({"ALLOWED_ORIGINS": "*"}, ["wsguard.E001"]),
        # Deploy-only findings are not reported by the ordinary check.
        ({"REPORT_ONLY": True}, []),
        ({"MISSING_ORIGIN": "allow"}, []),
    ],
)
def test_check_settings(wsguard, expected_ids):
    with override_settings(WSGUARD=wsguard):
        messages = checks.check_settings()
    assert sorted(ids(messages)) == sorted(expected_ids)
    assert all(m.hint for m in messages)


@pytest.mark.parametrize(
    "wsguard, expected_ids",
    [
        ({}, []),
        ({"ALLOWED_ORIGINS": ["https://app.example.com"]}, []),
        ({"ALLOWED_ORIGINS": ["*"]}, ["wsguard.E004"]),
        ({"ALLOWED_ORIGINS": ("https://app.example.com", "*")}, ["wsguard.E004"]),
        ({"ALLOWED_ORIGINS": ["*", "*"]}, ["wsguard.E004"]),
        ({"ALLOWED_ORIGINS": "*"}, []),
        ({"ALLOWED_ORIGINS": [{"*"}, ["*"], None, 3]}, []),
        ({"REPORT_ONLY": True}, ["wsguard.W002"]),
        ({"REPORT_ONLY": False}, []),
        ({"MISSING_ORIGIN": "allow"}, ["wsguard.W003"]),
        ({"MISSING_ORIGIN": "token"}, []),
        ({"MISSING_ORIGIN": "deny"}, []),
        (
            {"ALLOWED_ORIGINS": ["*"], "REPORT_ONLY": True, "MISSING_ORIGIN": "allow"},
            ["wsguard.E004", "wsguard.W002", "wsguard.W003"],
        ),
        ("not a dict", []),
        (None, []),
    ],
)
def test_check_deploy(wsguard, expected_ids):
    with override_settings(WSGUARD=wsguard):
        messages = checks.check_deploy()
    assert sorted(ids(messages)) == sorted(expected_ids)
    assert all(m.hint for m in messages)


@pytest.mark.parametrize(
    "wsguard, level_name",
    [
        ({"ALLOWED_ORIGINS": ["example.com"]}, "Error"),
        ({"MISSING_ORIGIN": "maybe"}, "Error"),
        ({"ALLOWED_ORIGINS": ["*"]}, "Warning"),
    ],
)
def test_check_levels(wsguard, level_name):
    with override_settings(WSGUARD=wsguard):
        (message,) = checks.check_settings()
    assert type(message).__name__ == level_name


@pytest.mark.parametrize(
    "pattern, hint_contains",
    [
        ("app.example.com", '"https://app.example.com"'),
        ("https://app.example.com/", '"https://app.example.com"'),
        ("https://*.co.uk", "*.yourname.co.uk"),
        ("https://app.example.com:0", "':*' for any port"),
        ("null", "never trusted"),
    ],
)
def test_e001_hint_says_what_to_write(pattern, hint_contains):
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": [pattern]}):
        (message,) = checks.check_settings()
    assert message.id == "wsguard.E001"
    assert hint_contains in message.hint
    assert repr(pattern) in message.msg


def test_e002_unknown_key_suggests_the_close_one():
    with override_settings(WSGUARD={"ALLOWED_ORGINS": ["https://app.example.com"]}):
        (message,) = checks.check_settings()
    assert message.id == "wsguard.E002"
    assert "'ALLOWED_ORIGINS'" in message.hint


def test_every_problem_is_reported_at_once():
    wsguard = {"ALLOWED_ORIGINS": ["example.com"], "MISSING_ORIGIN": "maybe", "BOGUS": 1, "SAME_ORIGIN": "no"}
    with override_settings(WSGUARD=wsguard):
        assert sorted(ids(checks.check_settings())) == ["wsguard.E001", "wsguard.E002", "wsguard.E002", "wsguard.E003"]


# --- through manage.py check --------------------------------------------------------------------


def run_check(*, deploy: bool = False) -> tuple[str, str]:
    """Run ``manage.py check`` the way a user does; return (stdout, the error report or "")."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check", deploy=deploy, stdout=out, stderr=err)
    except SystemCheckError as exc:
        return out.getvalue() + err.getvalue(), str(exc)
    return out.getvalue() + err.getvalue(), ""


@pytest.mark.parametrize(
    "wsguard, check_id, hint_contains",
    [
        ({"ALLOWED_ORIGINS": ["app.example.com"]}, "wsguard.E001", "https://app.example.com"),
        ({"ALLOWED_ORIGINS": "https://app.example.com"}, "wsguard.E001", "Write a list"),
        ({"ALLOWED_ORIGINS": ["https://*.github.io"]}, "wsguard.E001", "*.yourname.github.io"),
        ({"ALLOWED_ORGINS": []}, "wsguard.E002", "'ALLOWED_ORIGINS'"),
        ("not a dict", "wsguard.E002", "WSGUARD = {"),
        ({"MISSING_ORIGIN": "maybe"}, "wsguard.E003", '"token"'),
    ],
)
def test_manage_py_check_reports_errors_rather_than_crashing(wsguard, check_id, hint_contains):
    with override_settings(WSGUARD=wsguard):
        _, report = run_check()
    assert f"({check_id})" in report
    assert "HINT:" in report and hint_contains in report


def test_manage_py_check_reports_the_star_warning():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": ["*"]}):
        output, report = run_check()
    assert report == ""
    assert "(wsguard.W001)" in output
    assert "HINT: List the origins your pages are served from instead." in output


@pytest.mark.parametrize(
    "wsguard",
    [
        "not a dict",
        ["https://app.example.com"],
        {1: 2, ("a",): None},
        {"ALLOWED_ORIGINS": [{"*"}, ["*"], None, 3, b"*", object()]},
        {"ALLOWED_ORIGINS": {"https://app.example.com": True}},
        {"MISSING_ORIGIN": {"deny": 1}, "REPORT_ONLY": "yes", "LOG_RATE": float("nan")},
    ],
)
@pytest.mark.parametrize("deploy", [False, True])
def test_manage_py_check_reports_any_shape_of_bad_setting(wsguard, deploy):
    with override_settings(WSGUARD=wsguard):
        _, report = run_check(deploy=deploy)
    assert "(wsguard.E00" in report and "HINT:" in report


def test_manage_py_check_is_silent_about_a_good_configuration():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": ["https://app.example.com"]}):
        output, report = run_check()
    assert report == ""
    assert "wsguard." not in output


@pytest.mark.parametrize(
    "wsguard, check_id, hint_contains",
    [
        ({"ALLOWED_ORIGINS": ["*"]}, "wsguard.E004", "List the origins"),
        ({"REPORT_ONLY": True}, "wsguard.W002", "Turn it off"),
        ({"MISSING_ORIGIN": "allow"}, "wsguard.W003", '"token"'),
    ],
)
def test_manage_py_check_deploy_reports(wsguard, check_id, hint_contains):
    with override_settings(WSGUARD=wsguard):
        output, report = run_check(deploy=True)
    text = output + report
    assert f"({check_id})" in text
    assert hint_contains in text


def test_deploy_findings_are_absent_without_deploy():
    with override_settings(WSGUARD={"REPORT_ONLY": True, "MISSING_ORIGIN": "allow"}):
        output, report = run_check()
    assert "wsguard.W002" not in output + report
    assert "wsguard.W003" not in output + report


def test_star_is_an_error_only_under_deploy():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": ["*"]}):
        _, report = run_check(deploy=True)
    assert "(wsguard.E004)" in report


def test_every_check_id_in_the_code_has_exactly_one_section_in_docs_checks_md():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "checks.md").read_text()
    in_code = {
        m for path in (root / "wsguard").rglob("*.py") for m in re.findall(r"wsguard\.[EW]\d{3}", path.read_text())
    }
    assert {"wsguard.E001", "wsguard.E004", "wsguard.W001", "wsguard.W003"} <= in_code
    for check_id in sorted(in_code):
        assert doc.count(f"\n## {check_id}\n") == 1, check_id


def test_every_setting_has_exactly_one_section_in_docs_settings_md():
    from pathlib import Path

    from wsguard.conf import DEFAULTS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    assert "ALLOWED_ORIGINS" in DEFAULTS
    for key in DEFAULTS:
        assert doc.count(f"\n## {key}\n") == 1, key
