"""The aggregated rejection audit: memory-only on the handshake path, batched upserts that stay
exact under concurrency, a flood of forged handshakes leaving one row per key, retention."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from tests.test_trusted_origins import count_queries
from wsguard import audit
from wsguard.audit import OVERFLOW, Aggregator, Tally
from wsguard.models import HandshakeRejection
from wsguard.rejections import Rejection, report


@pytest.fixture(autouse=True)
def _empty_aggregator():
    audit.aggregator.take()
    audit.aggregator.overflowed = 0
    yield
    audit.aggregator.take()


def forged(i: int, distinct: int = 37) -> Rejection:
    k = i % distinct
    return Rejection(
        reason="origin-untrusted" if k % 3 else "origin-malformed",
        close_code=4403,
        path=f"/ws/room{k % 5}/",
        client=f"10.0.{k}.{i % 250}",
        origin=f"https://evil{k}.example",
    )


def expected_totals(n: int, distinct: int = 37) -> Counter:
    return Counter(audit.key_for(forged(i, distinct)) for i in range(n))


@pytest.mark.django_db(transaction=True)
def test_a_flood_of_100k_forged_rejections_leaves_one_row_per_key_with_exact_counts():
    n = 100_000
    with count_queries() as queries:
        started = time.perf_counter()
        for i in range(n):
            report(forged(i), sender=object)  # the real signal path: log (rate-limited) + handshake_rejected
        elapsed = time.perf_counter() - started
    assert queries == []  # the handshake path never touches the database
    assert len(audit.aggregator) == 37
    audit.flush_sync()
    assert HandshakeRejection.objects.count() == 37
    assert audit.totals() == dict(expected_totals(n))
    print(f"\n100,000 forged rejections through the signal path: {elapsed:.2f}s ({n / elapsed:,.0f}/s)")


@pytest.mark.django_db(transaction=True)
def test_first_and_last_seen_and_last_client_are_kept_across_flushes():
    key = ("https://a.example", "origin-untrusted", "/ws/")
    audit.aggregator.add(key, "10.0.0.1", 1_000_000.0, 100)
    audit.aggregator.add(key, "10.0.0.2", 1_000_050.0, 100)
    audit.flush_sync()
    audit.aggregator.add(key, "10.0.0.3", 1_000_100.0, 100)
    audit.flush_sync()
    row = HandshakeRejection.objects.get()
    assert row.count == 3
    assert row.first_seen.timestamp() == 1_000_000.0
    assert row.last_seen.timestamp() == 1_000_100.0
    assert row.last_client == "10.0.0.3"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("portable", [False, True], ids=["on-conflict-upsert", "insert-then-F-increment"])
def test_concurrent_flushes_leave_one_row_per_key_with_the_exact_total(portable):
    keys = [(f"https://k{i}.example", "origin-untrusted", f"/ws/{i % 3}/") for i in range(25)]
    threads, batches_each = 8, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for b in range(batches_each):
                now = time.time()
                batch = {key: Tally(t + b + 1, now, now, f"10.1.{t}.{b}") for key in keys}
                audit.write_with_retry(batch, portable=portable)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert not errors, errors
    per_key = sum(t + b + 1 for t in range(threads) for b in range(batches_each))
    assert HandshakeRejection.objects.count() == len(keys)
    assert audit.totals() == dict.fromkeys(keys, per_key)


def test_the_aggregator_is_bounded_and_counts_overflow_exactly():
    agg = Aggregator()
    for i in range(1000):
        agg.add((f"https://o{i}.example", "origin-untrusted", "/ws/"), None, float(i), max_keys=100)
    batch = agg.take()
    assert len(batch) == 101
    assert batch[(OVERFLOW, "origin-untrusted", OVERFLOW)].count == 900
    assert sum(t.count for t in batch.values()) == 1000


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_keeps_the_batch_for_the_next_flush_and_logs_once(caplog):
    for i in range(10):
        report(forged(i, distinct=4), sender=object)
    table = HandshakeRejection._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote('wsguard_audit_gone')}")
    try:
        assert audit.flush_sync() == 0
        report(forged(10, distinct=4), sender=object)
        assert audit.flush_sync() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {quote('wsguard_audit_gone')} RENAME TO {quote(table)}")
    assert sum("writing the rejection audit failed" in r.message for r in caplog.records) == 1
    assert audit.flush_sync() == 4
    assert audit.totals() == dict(expected_totals(11, distinct=4))


@pytest.mark.django_db
def test_audit_off_records_nothing(settings):
    settings.WSGUARD = {**settings.WSGUARD, "AUDIT": False}
    report(forged(1), sender=object)
    assert len(audit.aggregator) == 0


@pytest.mark.django_db
def test_purge_deletes_rows_older_than_the_retention(settings):
    settings.WSGUARD = {**settings.WSGUARD, "AUDIT_RETENTION_DAYS": 7}
    now = timezone.now()
    for days in (1, 6, 8, 30):
        HandshakeRejection.objects.create(
            origin=f"https://d{days}.example",
            reason="origin-untrusted",
            path="/ws/",
            count=1,
            first_seen=now - dt.timedelta(days=days),
            last_seen=now - dt.timedelta(days=days),
        )
    assert audit.purge() == 2
    assert sorted(HandshakeRejection.objects.values_list("origin", flat=True)) == [
        "https://d1.example",
        "https://d6.example",
    ]
    call_command("wsguard_origins", "purge-audit", "--days", "2")
    assert list(HandshakeRejection.objects.values_list("origin", flat=True)) == ["https://d1.example"]


@override_settings(WSGUARD={"ALLOWED_ORIGINS": ["https://app.example.com"], "AUDIT_FLUSH_SECONDS": 0.2})
@pytest.mark.django_db(transaction=True)
async def test_the_background_flusher_writes_denials_from_the_event_loop():
    from asgiref.sync import sync_to_async

    for i in range(50):
        report(forged(i, distinct=5), sender=object)  # inside a running loop: the flusher starts
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum((await sync_to_async(audit.totals)()).values()) == 50:
            break
        await _sleep()
    assert await sync_to_async(audit.totals)() == dict(expected_totals(50, distinct=5))
    await audit.flusher().stop()


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)


@pytest.mark.daphne
def test_a_real_daphne_flood_is_audited_one_row_per_key(daphne_factory, migrated_database_url):
    server = daphne_factory(DATABASE_URL=migrated_database_url)
    n, distinct = 2000, 8
    from bench.common import run_load

    for k in range(distinct):
        result = run_load(server.port, n // distinct, 10, headers=[("Origin", f"https://flood{k}.example")])
        assert result.count(403) == n // distinct, result.summary()
    path = migrated_database_url.removeprefix("sqlite:///")
    deadline = time.monotonic() + 60
    rows: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(path, timeout=10) as db:
            rows = db.execute("SELECT origin, count FROM wsguard_handshakerejection").fetchall()
        if sum(c for _, c in rows) >= n:
            break
        time.sleep(0.2)
    assert sorted(rows) == [(f"https://flood{k}.example", n // distinct) for k in range(distinct)]
