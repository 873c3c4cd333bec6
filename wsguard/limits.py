"""Limits that hold across workers, kept in the shared cache (``WSGUARD["CACHE_ALIAS"]``).

* :func:`handshake_allowed`: a fixed-window counter per client address (``HANDSHAKE_RATE``). With
  Django's Redis cache it is one pipelined round trip (``INCR`` + ``EXPIRE``); with any other
  backend it falls back to ``incr``/``add``, which every Django cache implements.
* :class:`SocketSlots`: at most ``MAX_SOCKETS_PER_USER`` concurrent sockets per user. Each socket
  holds one of the user's numbered slot keys, taken with an atomic ``cache.add`` and leased for
  :data:`LEASE_SECONDS`; each process renews its leases in one ``set_many`` every
  :data:`RENEW_SECONDS`, so a crashed worker's slots free themselves.

Everything here is synchronous and runs in the same database thread as the authentication step.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

from django.core.cache.backends.base import BaseCache

from . import conf

logger = logging.getLogger("wsguard")

RATE_PREFIX = "wsguard:rate:"
SLOT_PREFIX = "wsguard:sockets:"
LEASE_SECONDS = 90
RENEW_SECONDS = 30.0


def cache() -> BaseCache:
    return conf.shared_cache()


def _redis_incr(store: BaseCache, key: str, timeout: int) -> int | None:
    """SET NX EX + INCR in one round trip on Django's own Redis backend (any Redis version; EXPIRE
    NX would need Redis 7); None on any other backend."""
    from django.core.cache.backends.redis import RedisCache

    if not isinstance(store, RedisCache):
        return None
    full_key = store.make_and_validate_key(key)
    client = store._cache.get_client(full_key, write=True)
    pipe = client.pipeline(transaction=False)
    pipe.set(full_key, 0, ex=timeout, nx=True)
    pipe.incr(full_key)
    _, count = pipe.execute()
    return int(count)


def count_hit(key: str, window_seconds: int) -> int:
    """Add one hit to the counter ``key`` (which lives ``window_seconds``) and return its value."""
    store = cache()
    counted = _redis_incr(store, key, window_seconds + 1)
    if counted is not None:
        return counted
    try:
        return int(store.incr(key))
    except ValueError:
        if store.add(key, 1, timeout=window_seconds + 1):
            return 1
        return int(store.incr(key))


def hit_within(name: str, subject: str, rate: tuple[int, int] | None) -> bool:
    """Count one event for ``subject`` against ``rate`` (count, seconds); False once over it."""
    if rate is None:
        return True
    count, seconds = rate
    window = int(time.time() // seconds)
    return count_hit(f"{RATE_PREFIX}{name}:{subject}:{window}", seconds) <= count


def handshake_rate() -> tuple[int, int] | None:
    return conf.get_settings().handshake_rate


def handshake_allowed(client: str | None) -> bool:
    """Count one handshake from the address ``client``. A connection without an address (a Unix
    socket, an in-process test communicator) is not counted: one shared bucket would let a single
    client lock every other one out."""
    if not client:
        return True
    return hit_within("handshake", client, handshake_rate())


class SocketSlots:
    """This process's leases on per-user socket slots."""

    def __init__(self) -> None:
        self.owner = secrets.token_hex(8)
        self.held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._renewed_at = time.monotonic()

    def acquire(self, user_id: str, cap: int | None) -> str | None:
        """A slot key for one more socket of ``user_id``; None when the user already holds ``cap``.
        With no cap, the empty string (nothing to release). Slots are tried in order, so a user
        with ``n`` open sockets costs ``n + 1`` atomic ``add`` calls (one for the first socket)."""
        if cap is None:
            return ""
        store = cache()
        value = f"{self.owner}:{secrets.token_hex(4)}"
        for n in range(cap):
            key = f"{SLOT_PREFIX}{user_id}:{n}"
            if store.add(key, value, timeout=LEASE_SECONDS):
                with self._lock:
                    self.held[key] = value
                return key
        return None

    def release(self, key: str) -> None:
        if not key:
            return
        with self._lock:
            value = self.held.pop(key, None)
        if value is None:
            return
        # A lease lost in a stall longer than LEASE_SECONDS may have been taken by another
        # socket; deleting it then lets the user exceed the cap by one until that socket ends.
        try:
            cache().delete(key)
        except Exception as exc:  # the cache is away: the lease expires by itself
            logger.warning("wsguard: releasing a socket slot failed (%s); it expires by itself", type(exc).__name__)

    def renewal_due(self) -> bool:
        return bool(self.held) and time.monotonic() - self._renewed_at >= RENEW_SECONDS

    def renew(self, force: bool = False) -> int:
        """Extend every lease this process holds (one ``set_many``). Returns how many."""
        now = time.monotonic()
        if not force and now - self._renewed_at < RENEW_SECONDS:
            return 0
        self._renewed_at = now
        with self._lock:
            held = dict(self.held)
        if held:
            cache().set_many(held, timeout=LEASE_SECONDS)
        return len(held)


slots = SocketSlots()


def cache_is_local() -> bool:
    """True for caches inside this process (local memory, dummy): calling them does no I/O."""
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    return isinstance(cache(), (LocMemCache, DummyCache))


def max_sockets_per_user() -> int | None:
    value = conf.get_settings().raw["MAX_SOCKETS_PER_USER"]
    return None if value is None else int(value)
