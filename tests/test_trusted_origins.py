"""TrustedOrigin: validation and normalisation, compiling rows into the policy, expiry without any
write, and the origin decision making no database query."""

from __future__ import annotations

import datetime as dt
import io
import re
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from tests.origin_app import origin_communicator as communicator
from tests.queries import count_queries
from wsguard import policy, sync
from wsguard.models import TrustedOrigin
from wsguard.policy import AdminRow, PatternCache, build_admin_snapshot

# --- model -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://*.Tenant.Example", "https://*.tenant.example"),
        ("http://localhost:*", "http://localhost:*"),
    ],
)
def test_origin_is_stored_normalised(typed, stored):
    row = TrustedOrigin(origin=typed)
    row.full_clean()
    row.save()
    assert TrustedOrigin.objects.get().origin == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://app.example.com", "https://APP.example.com:443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_unique_as_normalised(first, second):
    TrustedOrigin.objects.create(origin=first)
    with pytest.raises(ValidationError) as excinfo:
        TrustedOrigin(origin=second).full_clean()
    assert "origin" in excinfo.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        TrustedOrigin.objects.create(origin=second)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    ["app.example.com", "https://app.example.com/path", "https://*.com", "null", "https://user@a.example", ""],
)
def test_bad_patterns_are_refused_with_a_hint(bad):
    with pytest.raises(ValidationError) as excinfo:
        TrustedOrigin(origin=bad).full_clean()
    assert "origin" in excinfo.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["ws/chat", "/ws/chat?x=1", "/ws/ chat"])
def test_bad_path_prefixes_are_refused(bad):
    with pytest.raises(ValidationError) as excinfo:
        TrustedOrigin(origin="https://a.example", path_prefix=bad).full_clean()
    assert "path_prefix" in excinfo.value.message_dict


# --- compiling rows ----------------------------------------------------------------------------


def decide(snapshot, origin: str, path: str = "/ws/", host: bytes = b"app.example.com"):
    facts = policy.HandshakeFacts.from_scope(
        {"type": "websocket", "path": path, "scheme": "wss", "headers": [(b"host", host), (b"origin", origin.encode())]}
    )
    return policy.evaluate(facts, snapshot)


def test_rows_in_force_are_trusted_with_their_source_and_scope():
    now = time.time()
    rows = [
        AdminRow(1, "https://partner.example"),
        AdminRow(2, "https://chat.example", path_prefix="/ws/chat/"),
        AdminRow(3, "https://gone.example", expires_at=now - 1),
        AdminRow(4, "https://soon.example", expires_at=now + 60),
    ]
    snapshot = build_admin_snapshot(rows, version="db:t", now=now)
    assert decide(snapshot, "https://partner.example").trusted_by == "admin:1"
    assert decide(snapshot, "https://chat.example", "/ws/chat/room").trusted_by == "admin:2"
    assert not decide(snapshot, "https://chat.example", "/ws/admin/").allowed
    assert not decide(snapshot, "https://gone.example").allowed
    assert decide(snapshot, "https://soon.example").trusted_by == "admin:4"
    assert snapshot.next_expiry == pytest.approx(now + 60)
    assert snapshot.admin_rows == 3
    # The settings patterns stay in force next to the rows.
    assert decide(snapshot, "https://app.example.com").trusted_by == "settings"


def test_rows_the_admin_may_not_hold_are_ignored_fail_closed(caplog):
    rows = [AdminRow(1, "*"), AdminRow(2, "not a pattern"), AdminRow(3, "https://ok.example")]
    snapshot = build_admin_snapshot(rows, version="db:t")
    assert not decide(snapshot, "https://evil.example").allowed
    assert decide(snapshot, "https://ok.example").allowed
    assert sum("is ignored" in r.message for r in caplog.records) == 2


def test_pattern_cache_parses_each_text_once_across_rebuilds(monkeypatch):
    import wsguard.policy as module

    parsed: list[str] = []
    real = module.parse_pattern

    def counting(text):
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(module, "parse_pattern", counting)
    cache = PatternCache()
    rows = [AdminRow(i, f"https://t{i}.example") for i in range(50)]
    build_admin_snapshot(rows, version="a", cache=cache)
    build_admin_snapshot([*rows, AdminRow(99, "https://new.example")], version="b", cache=cache)
    assert len(parsed) == 51


# --- through the database ------------------------------------------------------------------------




@pytest.mark.django_db(transaction=True)
async def test_origin_decision_makes_zero_database_queries():
    await sync_to_async(TrustedOrigin.objects.bulk_create)(
        [TrustedOrigin(origin=f"https://t{i}.example") for i in range(2000)]
    )
    await sync.refresh()
    assert policy.get_snapshot().admin_rows == 2000
    with count_queries() as queries:
        for origin in ("https://t1234.example", "https://evil.example", "null", "https://app.example.com"):
            comm = communicator(origin)
            connected, _ = await comm.connect()
            assert connected == (origin in ("https://t1234.example", "https://app.example.com")), origin
            if connected:
                await comm.disconnect()
    assert queries == []


@pytest.mark.django_db(transaction=True)
async def test_a_fresh_process_loads_the_rows_on_its_first_handshake():
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://late.example")
    from wsguard import conf

    conf.reset()  # a fresh process: nothing loaded, nothing installed (ready() touches no database)
    assert policy.installed_snapshot() is None and not sync.loaded()
    comm = communicator("https://late.example")
    assert (await comm.connect())[0] is True  # the first handshake waited for the rows
    await comm.disconnect()
    assert sync.loaded()


@pytest.mark.django_db(transaction=True)
async def test_a_first_handshake_with_the_database_down_is_decided_on_the_settings(monkeypatch, caplog):
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://late.example")
    from wsguard import conf

    conf.reset()

    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(sync, "load_rows", unreachable)
    denied = communicator("https://late.example")
    assert (await denied.connect())[0] is False  # fail closed: not trusted-by-database
    from_settings = communicator("https://x.partner.example")
    assert (await from_settings.connect())[0] is True
    await from_settings.disconnect()
    assert not sync.loaded()
    assert "loading trusted origins from the database failed" in caplog.text


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
async def test_expiry_takes_effect_without_any_write():
    soon = timezone.now() + dt.timedelta(seconds=1.5)
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://brief.example", expires_at=soon)
    await sync.refresh()
    comm = communicator("https://brief.example")
    assert (await comm.connect())[0] is True
    with count_queries() as queries:
        # Only the periodic tick runs; nothing is written (nor even read: the rows are in memory).
        deadline = time.monotonic() + 20
        while policy.get_snapshot().next_expiry is not None and time.monotonic() < deadline:
            await _sleep()
            if time.time() >= soon.timestamp():
                await sync.tick()
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close" and message["code"] == 4403
    assert not any(q.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for q in queries)
    refused = communicator("https://brief.example")
    assert (await refused.connect())[0] is False


# --- checks ------------------------------------------------------------------------------------


def check_ids(*args: str) -> set[str]:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    out = io.StringIO()
    try:
        call_command("check", *args, stdout=out, stderr=out)
    except SystemCheckError as exc:
        out.write(str(exc))
    return set(re.findall(r"wsguard\.[EW]01\d", out.getvalue()))


def test_process_local_cache_and_layer_warn_under_deploy(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert {"wsguard.W010", "wsguard.W011"} <= check_ids("--deploy")
    assert not {"wsguard.W010", "wsguard.W011"} & check_ids()


def test_shared_cache_and_layer_do_not_warn(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/1"}
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://x"]}}
    }
    assert not {"wsguard.W010", "wsguard.W011"} & check_ids("--deploy")


def test_cache_alias_must_name_a_cache(settings):
    settings.WSGUARD = {**settings.WSGUARD, "CACHE_ALIAS": "policy"}
    assert "wsguard.E010" in check_ids()


@pytest.mark.django_db
def test_rows_the_policy_refuses_are_reported_under_check_database():
    TrustedOrigin.objects.bulk_create([TrustedOrigin(origin="*"), TrustedOrigin(origin="example.com")])
    TrustedOrigin.objects.create(origin="https://fine.example")
    from wsguard.checks import check_trusted_origin_rows

    messages = check_trusted_origin_rows(databases=["default"])
    assert [m.id for m in messages] == ["wsguard.E011", "wsguard.E011"]
    assert check_trusted_origin_rows(databases=None) == []
