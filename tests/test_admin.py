"""The admin for trusted origins and the rejection audit, and ``manage.py wsguard_origins``."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from wsguard.checks import check_settings
from wsguard.models import HandshakeRejection, TrustedOrigin
from wsguard.origins import PatternError, parse_pattern

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:wsguard_trustedorigin_changelist"


@pytest.fixture
def rows():
    now = timezone.now()
    return {
        "plain": TrustedOrigin.objects.create(origin="https://plain.example", note="partner A"),
        "off": TrustedOrigin.objects.create(origin="https://off.example", is_active=False),
        "old": TrustedOrigin.objects.create(origin="https://old.example", expires_at=now - dt.timedelta(hours=1)),
        "soon": TrustedOrigin.objects.create(origin="https://soon.example", expires_at=now + dt.timedelta(days=1)),
        "chat": TrustedOrigin.objects.create(origin="https://chat.example", path_prefix="/ws/chat/"),
    }


def listed(response) -> set[str]:
    return {str(obj.origin) for obj in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "partner"}, {"https://plain.example"}),
        ({"q": "chat"}, {"https://chat.example"}),
        ({"is_active__exact": "0"}, {"https://off.example"}),
        ({"expiry": "expired"}, {"https://old.example"}),
        ({"expiry": "expiring"}, {"https://soon.example"}),
        ({"scope": "path"}, {"https://chat.example"}),
        (
            {"scope": "all", "expiry": "never"},
            {"https://plain.example", "https://off.example"},
        ),
    ],
)
def test_list_search_and_filters(admin_client, rows, query, expected):
    response = admin_client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    assert listed(response) == expected


def test_list_shows_state_and_links_the_test_view(admin_client, rows):
    content = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "in force" in content and "disabled" in content and "expired" in content
    assert reverse("admin:wsguard_trustedorigin_test") in content


def test_bulk_disable_and_enable_are_announced_once(admin_client, rows, announcements):
    ids = [rows["plain"].pk, rows["chat"].pk]
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "disable_selected", "_selected_action": ids}, follow=True
    )
    assert "Disabled 2 trusted origin(s)" in response.content.decode()
    assert not TrustedOrigin.objects.filter(pk__in=ids, is_active=True).exists()
    assert len(announcements) == 1
    admin_client.post(reverse(CHANGELIST), {"action": "enable_selected", "_selected_action": ids})
    assert TrustedOrigin.objects.filter(pk__in=ids, is_active=True).count() == 2
    assert len(announcements) == 2


def check_message_and_hint(pattern: str) -> tuple[str, str]:
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": [pattern]}):
        (error,) = [m for m in check_settings() if m.id == "wsguard.E001"]
    return error.msg, error.hint


@pytest.mark.parametrize("bad", ["app.example.com", "https://*.co.uk", "https://a.example/path", "null"])
def test_a_bad_pattern_is_a_field_error_with_the_checks_message_and_hint(admin_client, bad):
    response = admin_client.post(
        reverse("admin:wsguard_trustedorigin_add"), {"origin": bad, "is_active": "on", "path_prefix": "", "note": ""}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["origin"]
    message, hint = check_message_and_hint(bad)
    with pytest.raises(PatternError) as excinfo:
        parse_pattern(bad)
    assert message.endswith(excinfo.value.message)
    assert errors == [excinfo.value.message, f"Hint: {hint}"]
    assert not TrustedOrigin.objects.exists()


def test_the_match_everything_pattern_is_refused_in_the_admin(admin_client):
    response = admin_client.post(reverse("admin:wsguard_trustedorigin_add"), {"origin": "*", "is_active": "on"})
    assert "only be set in settings" in " ".join(response.context["adminform"].form.errors["origin"])
    assert not TrustedOrigin.objects.exists()


def test_adding_normalises_records_the_author_and_announces(admin_client, admin_user, announcements):
    response = admin_client.post(
        reverse("admin:wsguard_trustedorigin_add"),
        {"origin": "https://Bücher.Example:443", "is_active": "on", "path_prefix": "/ws/", "note": "shop"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    row = TrustedOrigin.objects.get()
    assert (row.origin, row.created_by, row.path_prefix) == ("https://xn--bcher-kva.example", admin_user, "/ws/")
    assert len(announcements) == 1


def test_a_duplicate_typed_differently_is_a_field_error(admin_client, rows):
    response = admin_client.post(
        reverse("admin:wsguard_trustedorigin_add"), {"origin": "HTTPS://PLAIN.example:443", "is_active": "on"}
    )
    assert "already exists" in " ".join(response.context["adminform"].form.errors["origin"])


@pytest.mark.parametrize(
    ("origin", "path", "verdict", "line"),
    [
        ("https://chat.example", "/ws/chat/room/", "Allowed", "matched:  https://chat.example (admin:"),
        ("https://chat.example", "/ws/other/", "Denied", "only under path prefix '/ws/chat/'"),
        ("https://off.example", "/", "Denied", "reason=origin-untrusted"),
        ("null", "/", "Denied", "reason=origin-opaque"),
    ],
)
def test_the_test_an_origin_view_shows_the_explain_output(admin_client, rows, origin, path, verdict, line):
    response = admin_client.get(reverse("admin:wsguard_trustedorigin_test"), {"origin": origin, "path": path})
    content = response.content.decode()
    assert response.status_code == 200
    assert f'<h2 id="wsguard-verdict">{verdict}</h2>' in content
    assert line in response.context["lines"][-1] or any(line in x for x in response.context["lines"])


@pytest.mark.parametrize(("secure", "verdict"), [("", "Allowed"), ("on", "Denied")])
def test_the_test_view_follows_the_socket_scheme_for_same_origin(admin_client, rows, secure, verdict):
    query = {"origin": "http://app.example.com", "path": "/", "host": "app.example.com", "secure": secure}
    response = admin_client.get(reverse("admin:wsguard_trustedorigin_test"), query)
    assert f'<h2 id="wsguard-verdict">{verdict}</h2>' in response.content.decode()


def test_the_test_view_needs_the_admin(client):
    response = client.get(reverse("admin:wsguard_trustedorigin_test"), {"origin": "https://a.example", "path": "/"})
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- the rejection audit -----------------------------------------------------------------------


def rejection(origin: str, reason: str = "origin-untrusted", count: int = 3) -> HandshakeRejection:
    now = timezone.now()
    return HandshakeRejection.objects.create(
        origin=origin, reason=reason, path="/ws/chat/", count=count, first_seen=now, last_seen=now
    )


def test_the_rejection_admin_is_read_only(admin_client):
    row = rejection("https://x.example")
    assert admin_client.get(reverse("admin:wsguard_handshakerejection_add")).status_code == 403
    change = reverse("admin:wsguard_handshakerejection_change", args=[row.pk])
    response = admin_client.get(change)
    assert response.status_code == 200 and not response.context["has_change_permission"]
    admin_client.post(change, {"origin": "https://tampered.example", "count": 1})
    row.refresh_from_db()
    assert row.origin == "https://x.example"


def test_the_rejection_admin_filters_by_reason_and_date(admin_client):
    rejection("https://a.example", reason="origin-untrusted")
    rejection("null", reason="origin-opaque")
    url = reverse("admin:wsguard_handshakerejection_changelist")
    response = admin_client.get(url, {"reason": "origin-opaque"})
    assert [r.origin for r in response.context["cl"].result_list] == ["null"]
    today = timezone.now().date()
    response = admin_client.get(url, {"last_seen__gte": str(today), "last_seen__lt": str(today + dt.timedelta(days=1))})
    assert len(response.context["cl"].result_list) == 2


def test_trust_the_selected_origins_only_for_well_formed_untrusted_ones(admin_client, admin_user, announcements):
    TrustedOrigin.objects.create(origin="https://listed.example", is_active=False)
    selected = [
        rejection("https://Partner.Example:443"),
        rejection("https://partner.example", reason="host-untrusted"),  # the same origin twice
        rejection("https://listed.example"),
        rejection("null", reason="origin-opaque"),
        rejection("", reason="origin-missing"),
        rejection("https://a.example/path", reason="origin-malformed"),
        rejection("https://a.example, https://b.example", reason="origin-malformed"),
        rejection("(overflow)"),
        rejection("http://[::1]:8080"),
    ]
    announcements.clear()
    response = admin_client.post(
        reverse("admin:wsguard_handshakerejection_changelist"),
        {"action": "trust_selected", "_selected_action": [r.pk for r in selected]},
        follow=True,
    )
    content = response.content.decode()
    assert set(TrustedOrigin.objects.values_list("origin", flat=True)) == {
        "https://listed.example",
        "https://partner.example",
        "http://[::1]:8080",
    }
    assert not TrustedOrigin.objects.get(origin="https://listed.example").is_active  # not silently re-enabled
    created = TrustedOrigin.objects.get(origin="https://partner.example")
    assert created.created_by == admin_user and "rejection audit" in created.note
    assert "Now trusting 2 origin(s)" in content and "Not trusted: 5" in content
    assert len(announcements) == 1


def test_trusting_needs_the_add_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_handshakerejection"))
    client.force_login(staff)
    row = rejection("https://partner.example")
    response = client.post(
        reverse("admin:wsguard_handshakerejection_changelist"),
        {"action": "trust_selected", "_selected_action": [row.pk]},
    )
    assert response.status_code == 200  # the action is not offered: the list is shown again
    assert not TrustedOrigin.objects.exists()


# --- the management command ----------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("wsguard_origins", *args, stdout=out)
    return out.getvalue()


def test_command_add_list_disable_remove(announcements):
    assert "Added https://app2.example" in run("add", "https://APP2.example:443", "--path", "/ws/", "--note", "n")
    assert "Updated" in run("add", "https://app2.example", "--expires", "2h")
    row = TrustedOrigin.objects.get()
    assert row.path_prefix == "" and timezone.now() + dt.timedelta(hours=1) < row.expires_at
    assert "https://app2.example\tin force" in run("list")
    assert "Disabled" in run("disable", "https://app2.example")
    assert "No trusted origins in force." in run("list")
    assert "https://app2.example\tdisabled" in run("list", "--all")
    assert "Removed" in run("remove", "https://app2.example")
    assert not TrustedOrigin.objects.exists()
    assert len(announcements) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "*"), "only be set in settings"),
        (("add", "app.example.com"), "Write"),
        (("add", "https://a.example", "--path", "ws"), "path_prefix"),
        (("add", "https://a.example", "--expires", "soon"), "--expires"),
        (("disable", "https://nothing.example"), "is not a trusted origin"),
        (("remove", "https://nothing.example"), "is not a trusted origin"),
        (("purge-audit", "--days", "-1"), "--days"),
    ],
)
def test_command_errors(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not TrustedOrigin.objects.exists()
