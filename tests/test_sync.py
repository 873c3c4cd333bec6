"""wsguard.sync in one process: announcements on commit, the version poll, live revocation, and
the last good snapshot when the database or the cache fails."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.test import override_settings

from tests.origin_app import origin_communicator as communicator
from tests.servers import free_port
from wsguard import policy, sync
from wsguard.models import TrustedOrigin

pytestmark = pytest.mark.django_db(transaction=True)




async def accepted(origin: str, path: str = "/ws/") -> bool:
    comm = communicator(origin, path)
    ok, _ = await comm.connect()
    if ok:
        await comm.disconnect()
    return ok


async def eventually(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (await predicate()) if asyncio.iscoroutinefunction(predicate) else predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_a_save_is_announced_and_applied_in_this_process(announcements):
    await sync.refresh()
    before = await sync_to_async(sync.read_version)()
    assert not await accepted("https://new.example")
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://new.example")
    await eventually(lambda: announcements)
    after = await sync_to_async(sync.read_version)()
    assert after != before and announcements[-1]["version"] == after
    await eventually(lambda: policy.get_snapshot().version == f"db:{after}")
    assert await accepted("https://new.example")


def test_many_changes_in_one_transaction_are_announced_once(announcements):
    with transaction.atomic():
        for i in range(20):
            TrustedOrigin.objects.create(origin=f"https://t{i}.example")
        TrustedOrigin.objects.filter(origin="https://t3.example").delete()
        assert announcements == []  # nothing before the commit
    assert len(announcements) == 1


def test_a_rolled_back_change_is_not_announced(announcements):
    with pytest.raises(RuntimeError), transaction.atomic():
        TrustedOrigin.objects.create(origin="https://rolled.example")
        raise RuntimeError("roll back")
    assert announcements == []


def test_a_change_inside_a_rolled_back_savepoint_keeps_the_outer_announcement(announcements):
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            TrustedOrigin.objects.create(origin="https://inner.example")
            raise RuntimeError("roll back the savepoint")
        TrustedOrigin.objects.create(origin="https://outer.example")
    assert len(announcements) == 1


async def test_a_lost_broadcast_is_caught_by_the_version_poll():
    await sync.refresh()
    # A change that sends no signal and no broadcast (a bulk update), then only the version bump:
    # this process must find it by polling the cache.
    await sync_to_async(TrustedOrigin.objects.bulk_create)([TrustedOrigin(origin="https://polled.example")])
    assert not await accepted("https://polled.example")
    await sync_to_async(sync.bump_version)()

    async def polled() -> bool:
        await sync.tick()  # what the listener runs every second
        return await accepted("https://polled.example")

    await eventually(polled)


async def test_disabling_an_origin_closes_its_open_sockets_with_4403():
    row = await sync_to_async(TrustedOrigin.objects.create)(origin="https://partner.example", path_prefix="/ws/")
    await sync.refresh()
    doomed, kept = communicator("https://partner.example"), communicator("https://app.example.com")
    assert (await doomed.connect())[0] and (await kept.connect())[0]
    row.is_active = False
    await sync_to_async(row.save)()
    message = await doomed.receive_output(timeout=10)
    assert message == {"type": "websocket.close", "code": 4403, "reason": "origin-untrusted"}
    assert await kept.receive_nothing(timeout=0.2)
    assert not await accepted("https://partner.example")
    await kept.disconnect()


async def test_narrowing_the_scope_closes_sockets_outside_it():
    row = await sync_to_async(TrustedOrigin.objects.create)(origin="https://scoped.example")
    await sync.refresh()
    chat, other = communicator("https://scoped.example", "/ws/chat/"), communicator("https://scoped.example", "/ws/x/")
    assert (await chat.connect())[0] and (await other.connect())[0]
    row.path_prefix = "/ws/chat/"
    await sync_to_async(row.save)()
    assert (await other.receive_output(timeout=10))["code"] == 4403
    assert await chat.receive_nothing(timeout=0.2)
    await chat.disconnect()


# --- faults --------------------------------------------------------------------------------------


def _rename_table(to: str, frm: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {connection.ops.quote_name(frm)} RENAME TO {connection.ops.quote_name(to)}")


async def test_database_unreachable_keeps_the_last_good_snapshot_and_logs_once(caplog):
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://kept.example")
    await sync.refresh()
    good = policy.get_snapshot()
    table = TrustedOrigin._meta.db_table
    await sync_to_async(_rename_table)("wsguard_gone", table)
    try:
        with caplog.at_level(logging.INFO, logger="wsguard"):
            for _ in range(3):
                await sync.refresh()
                await sync.tick()
                assert policy.get_snapshot() is good
                assert await accepted("https://kept.example")  # still trusted: last good snapshot
                assert not await accepted("https://evil.example")  # nothing fails open
        failures = [r for r in caplog.records if "loading trusted origins from the database failed" in r.message]
        assert len(failures) == 1
        assert sync.status()["database_failing"]
    finally:
        await sync_to_async(_rename_table)(table, "wsguard_gone")
    with caplog.at_level(logging.INFO, logger="wsguard"):
        sync._state.next_attempt = 0.0
        await sync.tick()
    assert not sync.status()["database_failing"]
    assert any("works again" in r.message for r in caplog.records)


async def test_cache_unreachable_keeps_the_last_good_snapshot_and_logs_once(caplog):
    from django.conf import settings

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    caches = {**settings.CACHES, "dead": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    wsguard = {**settings.WSGUARD, "CACHE_ALIAS": "dead", "POLICY_POLL_SECONDS": 0.01}
    await sync_to_async(TrustedOrigin.objects.create)(origin="https://kept.example")
    with override_settings(CACHES=caches, WSGUARD=wsguard):
        from django.core.cache import caches as django_caches

        with pytest.raises(Exception):  # noqa: B017 - nothing answers there, whatever redis-py raises
            django_caches["dead"].get("probe")
        with caplog.at_level(logging.INFO, logger="wsguard"):
            await sync.refresh()  # the database answers; the version is unknown
            good = policy.get_snapshot()
            assert good.admin_rows == 1
            for _ in range(5):
                sync._state.last_poll = 0.0
                await sync.tick()
                assert policy.get_snapshot() is good
                assert await accepted("https://kept.example")
                assert not await accepted("https://evil.example")
        failures = [r for r in caplog.records if "reading the policy version from the cache failed" in r.message]
        assert len(failures) == 1
        assert sync.status()["cache_failing"]
