"""API tokens: format and hashing, the checks at use, last_used_at at most once a minute, the
management command and the admin (secret shown once)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from wsguard.auth import tokens
from wsguard.auth.reasons import AuthReason
from wsguard.models import ApiToken

pytestmark = pytest.mark.django_db


def test_only_the_hash_is_stored_and_the_prefix_is_public(alice):
    row, text = tokens.create_token(alice, name="ci")
    kind, prefix, secret = text.split("_", 2)
    assert (kind, prefix) == ("wsg", row.prefix)
    assert len(secret) == 43  # 256 bits
    stored = ApiToken.objects.get(pk=row.pk)
    assert secret not in stored.secret_hash and stored.secret_hash == tokens.hash_secret(secret)
    assert secret not in str(stored) and secret not in repr(stored)


def test_a_valid_token_is_one_query_with_its_user(alice):
    _, text = tokens.create_token(alice)
    ApiToken.objects.update(last_used_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        token, reason = tokens.check_token(text)
        assert token.user.get_username() == "alice"
    assert reason is None and len(queries) == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: "wsg_00000000_" + t.split("_", 2)[2],  # unknown prefix
        lambda t: t.replace("wsg_", "xyz_"),
        lambda t: t + " ",
        lambda t: "",
        lambda t: "wsg_" + "x" * 500,
    ],
)
def test_wrong_or_malformed_tokens_are_invalid(alice, mangle):
    _, text = tokens.create_token(alice)
    assert tokens.check_token(mangle(text))[1] == AuthReason.AUTH_INVALID


def test_revoked_expired_and_inactive_say_so(alice):
    row, text = tokens.create_token(alice)
    ApiToken.objects.filter(pk=row.pk).update(is_active=False)
    assert tokens.check_token(text)[1] == AuthReason.TOKEN_REVOKED
    ApiToken.objects.filter(pk=row.pk).update(is_active=True, expires_at=timezone.now() - timedelta(seconds=1))
    assert tokens.check_token(text)[1] == AuthReason.TOKEN_EXPIRED
    ApiToken.objects.filter(pk=row.pk).update(expires_at=None)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    assert tokens.check_token(text)[1] == AuthReason.USER_INACTIVE


def test_last_used_at_is_written_at_most_once_a_minute(alice):
    row, text = tokens.create_token(alice)
    token, _ = tokens.check_token(text)
    with CaptureQueriesContext(connection) as first:
        tokens.touch(token)
    assert len(first) == 1
    token, _ = tokens.check_token(text)
    with CaptureQueriesContext(connection) as second:
        tokens.touch(token)
    assert len(second) == 0
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    token, _ = tokens.check_token(text)
    with CaptureQueriesContext(connection) as third:
        tokens.touch(token)
    assert len(third) == 1


def test_the_command_creates_lists_and_revokes(alice):
    out, err = StringIO(), StringIO()
    call_command("wsguard_token", "create", "alice", "--name", "deploy", "--expires", "30d", stdout=out, stderr=err)
    text = out.getvalue().strip()
    row = ApiToken.objects.get()
    assert tokens.check_token(text)[0] == row
    assert row.name == "deploy"
    assert timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)
    assert "shown only this once" in err.getvalue()
    listing = StringIO()
    call_command("wsguard_token", "list", stdout=listing)
    assert row.prefix in listing.getvalue() and "active" in listing.getvalue()
    assert text.split("_", 2)[2] not in listing.getvalue()
    call_command("wsguard_token", "revoke", row.prefix, stdout=StringIO())
    assert tokens.check_token(text)[1] == AuthReason.TOKEN_REVOKED


def test_the_command_refuses_unknown_users_and_prefixes(alice):
    with pytest.raises(CommandError, match="No user"):
        call_command("wsguard_token", "create", "nobody")
    with pytest.raises(CommandError, match="No token"):
        call_command("wsguard_token", "revoke", "deadbeef")
    with pytest.raises(CommandError, match="duration"):
        call_command("wsguard_token", "create", "alice", "--expires", "soon")


def test_the_admin_shows_the_secret_once_and_stores_its_hash(alice):
    admin_user = get_user_model().objects.create_superuser("root", password="pw-root-123")
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/wsguard/apitoken/add/", {"user": alice.pk, "name": "from admin", "is_active": "on"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    (message,) = [m for m in shown if "wsg_" in m]
    text = message.split("The new token is ")[1].split(" ")[0]
    assert tokens.check_token(text)[1] is None
    again = client.get("/admin/wsguard/apitoken/")
    assert text not in again.content.decode()


def test_the_admin_revoke_action(alice):
    admin_user = get_user_model().objects.create_superuser("root", password="pw-root-123")
    row, text = tokens.create_token(alice)
    client = Client()
    client.force_login(admin_user)
    client.post("/admin/wsguard/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    assert tokens.check_token(text)[1] == AuthReason.TOKEN_REVOKED
