"""The policy from the database, in every worker.

Each process holds one compiled :class:`~wsguard.policy.PolicySnapshot` (settings + in-force
``TrustedOrigin`` rows + same-origin); handshakes read it and never the database. This module is
the edge that builds it:

* **on a process's first handshake** (:func:`ensure_loaded`, never in ``AppConfig.ready()``, which
  every management command runs) the rows are loaded once, and that handshake waits for them; with
  no database the settings alone are trusted (fail closed) and the load is retried with back-off;
* **on a change**: a save or delete of a row (or :func:`policy_changed` after a bulk update)
  bumps a version key in Django's cache and broadcasts a ``policy-changed`` control event over the
  channel layer once the transaction commits. Every process rebuilds its snapshot, then
  :func:`wsguard.live.recheck_origins` closes (4403) its live sockets that are no longer trusted;
* **on a tick** (every second, in the live-socket listener) each process compares the version
  key with the one it built from, so a lost broadcast is caught within ``POLICY_POLL_SECONDS``, and
  recompiles its snapshot when a row's ``expires_at`` passes - expiry needs no write at all.

When the database or the cache fails, the last good snapshot stays in force and the failure is
logged once (and its recovery once). Database and cache calls run off the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from . import conf, live, policy
from .policy import AdminRow, PatternCache, PolicySnapshot

logger = logging.getLogger("wsguard")

VERSION_KEY = "wsguard:policy-version"
EVENT_POLICY_CHANGED = "policy-changed"
# After a failed load, the next attempt waits this long (seconds, growing), so that a database
# outage costs each worker one cheap failed query every so often, not one per tick.
RETRY_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
UNKNOWN_VERSION = "?"
FREEZE_ROWS = 5000


class _FailureLog:
    """Logs the first failure of one dependency and its recovery; stays quiet in between."""

    def __init__(self, what: str, consequence: str) -> None:
        self.what = what
        self.consequence = consequence
        self.failing = False
        self.failures = 0

    def failed(self, exc: BaseException, level: int = logging.WARNING) -> None:
        self.failures += 1
        if not self.failing:
            # A quiet (start-up) failure is expected while a project is not migrated yet; it must not
            # swallow the WARNING of the first failure once the process serves.
            self.failing = level >= logging.WARNING
            logger.log(level, "wsguard: %s failed (%s: %s); %s", self.what, type(exc).__name__, exc, self.consequence)

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            logger.warning("wsguard: %s works again", self.what)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    rows: tuple[AdminRow, ...] | None = None  # None: never loaded in this process
    version: str | None = None  # the cache token the rows were loaded under
    patterns: PatternCache = field(default_factory=PatternCache)
    requested: int = 0
    built: int = 0
    next_attempt: float = 0.0
    attempts_failed: int = 0
    last_poll: float = 0.0
    rechecked: PolicySnapshot | None = None
    database: _FailureLog = field(
        default_factory=lambda: _FailureLog(
            "loading trusted origins from the database", "the last good policy stays in force"
        )
    )
    cache: _FailureLog = field(
        default_factory=lambda: _FailureLog(
            "reading the policy version from the cache", "the last good policy stays in force"
        )
    )
    tasks: set[asyncio.Task] = field(default_factory=set)
    first_load: asyncio.Task | None = None


_state = _State()


def _cache() -> Any:
    return conf.shared_cache()


def read_version() -> str | None:
    """The current policy version token in the shared cache (None if never bumped). Raises when
    the cache cannot be reached."""
    value = _cache().get(VERSION_KEY)
    return None if value is None else str(value)


def bump_version() -> str:
    token = uuid.uuid4().hex
    _cache().set(VERSION_KEY, token, timeout=None)
    return token


def load_rows() -> tuple[AdminRow, ...]:
    """The in-force rows, as plain records (one query)."""
    from django.utils import timezone

    from .models import TrustedOrigin

    rows = (
        TrustedOrigin.objects.in_force(timezone.now())
        .order_by()
        .values_list("pk", "origin", "path_prefix", "expires_at")
    )
    return tuple(
        AdminRow(pk=pk, origin=origin, path_prefix=prefix or "", expires_at=None if exp is None else exp.timestamp())
        for pk, origin, prefix, exp in rows.iterator(chunk_size=5000)
    )


def _compile_and_install(rows: tuple[AdminRow, ...], version: str, now: float | None = None) -> PolicySnapshot:
    snapshot = policy.build_admin_snapshot(rows, version=f"db:{version}", now=now, cache=_state.patterns)
    policy.install_snapshot(snapshot)
    if len(rows) >= FREEZE_ROWS:
        # A large policy is hundreds of thousands of long-lived objects; left in the collected
        # generations, every full garbage collection (triggered by ordinary per-handshake
        # allocations) walks them all. Collect once, then move what survives out of the
        # collector's sight (https://docs.python.org/3/library/gc.html#gc.freeze).
        gc.collect()
        gc.freeze()
    return snapshot


def refresh_sync(ticket: int | None = None) -> PolicySnapshot | None:
    """Load the rows and install a new snapshot; returns it, or None when the load failed (the
    last good snapshot stays) or a build that started after ``ticket`` was requested already ran.
    Synchronous: call it through :func:`refresh` from async code."""
    if ticket is None:
        ticket = _request_ticket()
    with _state.lock:
        if _state.built >= ticket:
            return None
        target = _state.requested
        try:
            token = read_version()
        except Exception as exc:
            _state.cache.failed(exc)
            token = UNKNOWN_VERSION
        else:
            _state.cache.succeeded()
            token = token or "0"
        try:
            rows = load_rows()
        except Exception as exc:
            _state.database.failed(exc)
            _state.attempts_failed += 1
            delay = RETRY_BACKOFF[min(_state.attempts_failed, len(RETRY_BACKOFF)) - 1]
            _state.next_attempt = time.monotonic() + delay
            return None
        _state.database.succeeded()
        _state.attempts_failed = 0
        _state.next_attempt = 0.0
        try:
            snapshot = _compile_and_install(rows, token)
        except Exception:
            # The settings themselves are broken (ImproperlyConfigured): nothing new is installed.
            logger.exception("wsguard: compiling the policy failed; the last good policy stays in force")
            return None
        _state.rows, _state.version, _state.built = rows, token, target
        _state.last_poll = time.monotonic()
        return snapshot


def ensure_current() -> PolicySnapshot:
    """The installed snapshot, rebuilt first if the shared version key says it is stale or this
    process never loaded the rows (synchronous; for the admin and management commands)."""
    try:
        stale = _state.rows is None or (read_version() or "0") != _state.version
    except Exception as exc:
        _state.cache.failed(exc)
        stale = _state.rows is None
    if stale:
        refresh_sync()
    return policy.get_snapshot()


def _request_ticket() -> int:
    with _state.lock:
        _state.requested += 1
        return _state.requested


def expire_sync(now: float | None = None) -> PolicySnapshot | None:
    """Recompile from the rows already in memory, dropping those expired by ``now`` (no query)."""
    with _state.lock:
        if _state.rows is None:
            return None
        return _compile_and_install(_state.rows, _state.version or UNKNOWN_VERSION, now)


async def refresh() -> None:
    """Rebuild this process's snapshot from the database, then close live sockets it no longer
    trusts. Concurrent requests are coalesced into as few builds as possible."""
    ticket = _request_ticket()
    await database_sync_to_async(refresh_sync)(ticket)
    await recheck_if_changed()


async def recheck_if_changed() -> int:
    """Re-decide live sockets once for each newly installed snapshot (whoever installed it)."""
    snapshot = policy.installed_snapshot()
    if snapshot is None or snapshot is _state.rechecked:
        return 0
    first, _state.rechecked = _state.rechecked is None, snapshot
    if first:
        return 0  # the first snapshot this process sees: its sockets were accepted under it
    if snapshot.report_only:
        # Report-only lets denied handshakes through; it must not close them either.
        return 0
    return await live.recheck_origins(snapshot)


def loaded() -> bool:
    """True once this process has loaded the admin rows at least once."""
    return _state.rows is not None


async def tick() -> None:
    """Periodic work in each process: expiry, the version poll, retries after a failure."""
    snapshot = policy.installed_snapshot()
    if snapshot is not None and snapshot.next_expiry is not None and time.time() >= snapshot.next_expiry:
        await sync_to_async(expire_sync, thread_sensitive=False)()
    now = time.monotonic()
    if _state.rows is None or _state.attempts_failed:
        if now >= _state.next_attempt:
            await refresh()
            return
    elif now - _state.last_poll >= conf.get_settings().raw["POLICY_POLL_SECONDS"]:
        _state.last_poll = now
        try:
            token = await sync_to_async(read_version, thread_sensitive=False)()
        except Exception as exc:
            _state.cache.failed(exc)
        else:
            _state.cache.succeeded()
            if (token or "0") != _state.version:
                await refresh()
                return
    await recheck_if_changed()


async def _on_policy_changed(event: dict) -> None:
    version = event.get("version")
    if isinstance(version, str) and version == _state.version and _state.rows is not None:
        return  # this process already built from that version
    await refresh()


def _on_first_use() -> None:
    """The first handshake in this process's event loop: start the listener (broadcasts, version
    polls, expiry) even before any socket is accepted, and if start-up found no database, load the
    rows in the background. Never blocks the handshake."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    live.listener.ensure_started()
    if _state.rows is None and time.monotonic() >= _state.next_attempt:
        task = loop.create_task(refresh(), name="wsguard-policy-load")
        _state.tasks.add(task)
        task.add_done_callback(_state.tasks.discard)


# --- writes: version bump and broadcast --------------------------------------------------------


def _announce() -> None:
    """After a commit that changed trusted origins: bump the version key, then broadcast."""
    token: str | None
    try:
        token = bump_version()
    except Exception as exc:
        logger.warning("wsguard: could not bump the policy version in the cache (%r); broadcasting anyway", exc)
        token = None
    try:
        live.publish_from_sync({"kind": EVENT_POLICY_CHANGED, "version": token})
    except Exception as exc:
        logger.warning("wsguard: could not broadcast a policy change (%r); workers will poll for it", exc)


def policy_changed(using: str | None = None) -> None:
    """Announce a change to the trusted origins once the current transaction commits (at once
    outside a transaction). Call it after writes that send no model signals (``QuerySet.update``).
    Many changes in one transaction are announced once."""
    conn = transaction.get_connection(using)
    if conn.in_atomic_block:
        current = set(conn.savepoint_ids)
        # Already queued at this level or an outer one: any rollback that drops that callback also
        # drops this change. (run_on_commit holds (savepoint ids, callback, robust) tuples.)
        for entry in conn.run_on_commit:
            if len(entry) >= 2 and entry[1] is _announce and set(entry[0]) <= current:
                return
        transaction.on_commit(_announce, using=using, robust=True)
        return
    _announce()


def _row_changed(sender: type, using: str | None = None, **kwargs: Any) -> None:
    policy_changed(using)


# --- first handshake -------------------------------------------------------------------------

# How long a process's first handshake waits for the rows before it is decided on the settings
# alone (fail closed); the load goes on in the background and later handshakes see it.
FIRST_LOAD_WAIT_SECONDS = 5.0


async def ensure_loaded(wait: float = FIRST_LOAD_WAIT_SECONDS) -> None:
    """Load the rows on a process's first handshake, not in ``AppConfig.ready()``: every management
    command runs ``ready()``, and Django asks apps not to touch the database there (``manage.py
    test`` would query the production database). Concurrent first handshakes share one load; after
    a failure, attempts follow the back-off and handshakes do not wait."""
    if _state.rows is not None or time.monotonic() < _state.next_attempt:
        return
    loop = asyncio.get_running_loop()
    task = _state.first_load
    if task is None or task.done() or task.get_loop() is not loop:
        task = _state.first_load = loop.create_task(refresh(), name="wsguard-policy-first-load")
        _state.tasks.add(task)
        task.add_done_callback(_state.tasks.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), wait)
    except TimeoutError:
        logger.warning("wsguard: the trusted origins did not load within %.0f s; deciding on the settings", wait)
    except Exception as exc:  # refresh logs its own failures; never let one escape into a handshake
        logger.debug("wsguard: first policy load failed: %r", exc)


def install() -> None:
    """Connect the model signals, the control-event and tick handlers, and the first-use hook."""
    from .models import TrustedOrigin

    post_save.connect(_row_changed, sender=TrustedOrigin, dispatch_uid="wsguard.sync.saved")
    post_delete.connect(_row_changed, sender=TrustedOrigin, dispatch_uid="wsguard.sync.deleted")
    live.on_event(EVENT_POLICY_CHANGED)(_on_policy_changed)
    live.on_tick(tick)
    policy.on_first_use(_on_first_use)


def start_process() -> None:
    """Connect signals and handlers (called from ``AppConfig.ready()``; no database access)."""
    from . import audit

    install()
    audit.install()


def reset_state() -> None:
    """Forget everything loaded in this process (tests; settings changes)."""
    global _state
    _state = _State()


conf.on_reset(reset_state)


def status() -> dict[str, Any]:
    """What this process enforces, for diagnostics."""
    snapshot = policy.installed_snapshot()
    return {
        "loaded": _state.rows is not None,
        "version": _state.version,
        "rows": None if _state.rows is None else len(_state.rows),
        "snapshot": None if snapshot is None else snapshot.version,
        "database_failing": _state.database.failing,
        "cache_failing": _state.cache.failing,
    }
