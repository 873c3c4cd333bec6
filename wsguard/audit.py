"""The aggregated rejection audit: one ``HandshakeRejection`` row per (origin as sent, reason, path).

The ``handshake_rejected`` receiver only adds to an in-memory dict (bounded by ``AUDIT_MAX_KEYS``;
keys beyond it are counted under :data:`OVERFLOW`), so a flood of forged handshakes costs the event
loop a dict update each, never a query. A background task per process writes the aggregate every
``AUDIT_FLUSH_SECONDS`` in one transaction of upserts that add to the stored counts
(``INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count`` on SQLite and PostgreSQL;
insert-if-missing then ``F()`` increments elsewhere), so any number of processes and threads
flushing the same keys at once leave one row per key with the exact total. A failed write puts its
batch back for the next flush (bounded by the same key limit). Rows not seen for
``AUDIT_RETENTION_DAYS`` are purged hourly and by ``manage.py wsguard_origins purge-audit``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError, OperationalError, connections, router, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Greatest, Least

from . import conf
from .rejections import Rejection

logger = logging.getLogger("wsguard")

OVERFLOW = "(overflow)"
PURGE_EVERY_SECONDS = 3600.0
WRITE_ATTEMPTS = 12
# Django's model limits for the key columns (HandshakeRejection); values are clipped to fit.
ORIGIN_CHARS, REASON_CHARS, PATH_CHARS, CLIENT_CHARS = 255, 40, 255, 64

Key = tuple[str, str, str]


@dataclass(slots=True)
class Tally:
    count: int
    first_seen: float
    last_seen: float
    last_client: str

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen >= self.last_seen:
            self.last_seen = other.last_seen
            self.last_client = other.last_client or self.last_client


def key_for(rejection: Rejection) -> Key:
    return (
        (rejection.origin or "")[:ORIGIN_CHARS],
        str(rejection.reason)[:REASON_CHARS],
        (rejection.path or "")[:PATH_CHARS],
    )


class Aggregator:
    """Counts denials in memory until the next flush. Thread-safe; O(1) per denial."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[Key, Tally] = {}
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._tallies)

    def add(self, key: Key, client: str | None, now: float, max_keys: int, count: int = 1) -> None:
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                if len(self._tallies) >= max_keys:
                    self.overflowed += count
                    key = (OVERFLOW, key[1], OVERFLOW)
                    tally = self._tallies.get(key)
                if tally is None:
                    self._tallies[key] = Tally(count, now, now, (client or "")[:CLIENT_CHARS])
                    return
            tally.count += count
            tally.last_seen = now
            if client:
                tally.last_client = client[:CLIENT_CHARS]

    def take(self) -> dict[Key, Tally]:
        with self._lock:
            taken, self._tallies = self._tallies, {}
            return taken

    def put_back(self, batch: dict[Key, Tally], max_keys: int) -> None:
        """Return an unwritten batch; what no longer fits is folded into the overflow keys."""
        with self._lock:
            for key, tally in batch.items():
                mine = self._tallies.get(key)
                if mine is None and len(self._tallies) >= max_keys and key[0] != OVERFLOW:
                    key = (OVERFLOW, key[1], OVERFLOW)
                    mine = self._tallies.get(key)
                if mine is None:
                    self._tallies[key] = Tally(tally.count, tally.first_seen, tally.last_seen, tally.last_client)
                else:
                    mine.merge(tally)


aggregator = Aggregator()


# --- the signal receiver (on the handshake path: memory only) ----------------------------------


def record(sender: object, rejection: Rejection, **kwargs: Any) -> None:
    """``handshake_rejected`` receiver. Never touches the database."""
    wsguard = conf.get_settings().raw
    if not wsguard["AUDIT"]:
        return
    aggregator.add(key_for(rejection), rejection.client, time.time(), wsguard["AUDIT_MAX_KEYS"])
    _flusher.ensure_started()


# --- writing -----------------------------------------------------------------------------------


def _aware(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _upsert_sql(vendor: str, table: str, quote: Any) -> str | None:
    greatest, least = {"sqlite": ("MAX", "MIN"), "postgresql": ("GREATEST", "LEAST")}.get(vendor, (None, None))
    if greatest is None:
        return None
    t = quote(table)
    cols = [quote(c) for c in ("origin", "reason", "path", "count", "first_seen", "last_seen", "last_client")]
    origin, reason, path, count, first_seen, last_seen, last_client = cols
    # Identifiers come from the model's metadata, quoted by the backend; every value is a parameter.
    sql = (
        f"INSERT INTO {t} ({', '.join(cols)}) VALUES (%s, %s, %s, %s, %s, %s, %s) "  # noqa: S608
        f"ON CONFLICT ({origin}, {reason}, {path}) DO UPDATE SET "
        f"{count} = {t}.{count} + excluded.{count}, "
        f"{first_seen} = {least}({t}.{first_seen}, excluded.{first_seen}), "
        f"{last_client} = CASE WHEN excluded.{last_seen} >= {t}.{last_seen} "
        f"THEN excluded.{last_client} ELSE {t}.{last_client} END, "
        f"{last_seen} = {greatest}({t}.{last_seen}, excluded.{last_seen})"
    )
    return sql


def write_batch(batch: dict[Key, Tally], *, portable: bool = False) -> int:
    """Add ``batch`` to the stored rows in one transaction; returns the rows touched. Keys are
    written in sorted order so concurrent writers lock rows in the same order (no deadlocks)."""
    from .models import HandshakeRejection

    if not batch:
        return 0
    alias = router.db_for_write(HandshakeRejection)
    connection = connections[alias]
    items = sorted(batch.items())
    table = HandshakeRejection._meta.db_table
    sql = None if portable else _upsert_sql(connection.vendor, table, connection.ops.quote_name)
    with transaction.atomic(using=alias):
        if sql is not None:
            params = []
            for (origin, reason, path), tally in items:
                first, last = _aware(tally.first_seen), _aware(tally.last_seen)
                params.append(
                    (
                        origin,
                        reason,
                        path,
                        tally.count,
                        connection.ops.adapt_datetimefield_value(first),
                        connection.ops.adapt_datetimefield_value(last),
                        tally.last_client,
                    )
                )
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
            return len(items)
        # Any other database: make sure every row exists, then increment with F() (row-locked).
        HandshakeRejection.objects.using(alias).bulk_create(
            [
                HandshakeRejection(
                    origin=origin,
                    reason=reason,
                    path=path,
                    count=0,
                    first_seen=_aware(tally.first_seen),
                    last_seen=_aware(tally.first_seen),
                    last_client="",
                )
                for (origin, reason, path), tally in items
            ],
            ignore_conflicts=True,
        )
        for (origin, reason, path), tally in items:
            rows = HandshakeRejection.objects.using(alias).filter(origin=origin, reason=reason, path=path)
            rows.update(
                count=F("count") + tally.count,
                first_seen=Least(F("first_seen"), Value(_aware(tally.first_seen), output_field=DateTimeField())),
                last_seen=Greatest(F("last_seen"), Value(_aware(tally.last_seen), output_field=DateTimeField())),
            )
            if tally.last_client:
                rows.filter(last_seen__lte=_aware(tally.last_seen)).update(last_client=tally.last_client)
    return len(items)


def write_with_retry(batch: dict[Key, Tally], *, portable: bool = False) -> int:
    """:func:`write_batch`, retried a few times when the database is busy (SQLite's lock)."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return write_batch(batch, portable=portable)
        except OperationalError as exc:
            if attempt == WRITE_ATTEMPTS - 1 or "lock" not in str(exc).lower():
                raise
            time.sleep(min(1.0, 0.02 * (2**attempt)) * (0.5 + random.random()))  # noqa: S311 - jitter
    return 0


class _WriteFailures:
    failing = False


def flush_sync() -> int:
    """Write everything aggregated so far (synchronously). On failure the batch is kept for the
    next flush and the failure is logged once."""
    batch = aggregator.take()
    if not batch:
        return 0
    try:
        written = write_with_retry(batch)
    except DatabaseError as exc:
        aggregator.put_back(batch, conf.get_settings().raw["AUDIT_MAX_KEYS"])
        if not _WriteFailures.failing:
            _WriteFailures.failing = True
            logger.warning("wsguard: writing the rejection audit failed (%r); keeping it for the next flush", exc)
        return 0
    if _WriteFailures.failing:
        _WriteFailures.failing = False
        logger.warning("wsguard: writing the rejection audit works again")
    if aggregator.overflowed:
        logger.warning(
            "wsguard: the rejection audit held more than AUDIT_MAX_KEYS distinct keys; "
            "%d denial(s) were counted under %r",
            aggregator.overflowed,
            OVERFLOW,
        )
        aggregator.overflowed = 0
    return written


def purge(days: int | None = None, now: dt.datetime | None = None) -> int:
    """Delete audit rows last seen more than ``days`` (default ``AUDIT_RETENTION_DAYS``) ago."""
    from django.utils import timezone

    from .models import HandshakeRejection

    days = conf.get_settings().raw["AUDIT_RETENTION_DAYS"] if days is None else days
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    deleted, _ = HandshakeRejection.objects.filter(last_seen__lt=cutoff).delete()
    return deleted


class Flusher:
    """One background task per process (per event loop) that writes the aggregate periodically."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._last_purge = 0.0

    def ensure_started(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (sync code): flush_sync() or the next async caller writes it
        if self._task is not None and not self._task.done() and self._loop is loop:
            max_keys = conf.get_settings().raw["AUDIT_MAX_KEYS"]
            if self._wake is not None and len(aggregator) >= max_keys // 2:
                self._wake.set()  # write early when the buffer fills up
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="wsguard-audit-flusher")

    async def stop(self, flush: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - stopping; errors were logged
                pass
        if flush:
            await database_sync_to_async(flush_sync)()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            seconds = conf.get_settings().raw["AUDIT_FLUSH_SECONDS"]
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await database_sync_to_async(flush_sync)()
                if time.monotonic() - self._last_purge >= PURGE_EVERY_SECONDS:
                    self._last_purge = time.monotonic()
                    await database_sync_to_async(purge)()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("wsguard: the rejection audit flush failed")


_flusher = Flusher()


def flusher() -> Flusher:
    return _flusher


def install() -> None:
    from .signals import handshake_rejected

    handshake_rejected.connect(record, dispatch_uid="wsguard.audit.record")


def totals(keys: Iterable[Key] | None = None) -> dict[Key, int]:
    """Stored counts by key (for diagnostics and tests)."""
    from .models import HandshakeRejection

    rows = HandshakeRejection.objects.values_list("origin", "reason", "path", "count")
    wanted = None if keys is None else set(keys)
    return {(o, r, p): c for o, r, p, c in rows if wanted is None or (o, r, p) in wanted}
