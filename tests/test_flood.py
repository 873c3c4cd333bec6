"""A flood of rejected handshakes against a real daphne running the full stack (the demo's
``GuardStack``): no traceback in the server's log, the wsguard log lines rate-limited with a
"suppressed" count, the audit table holding one row per distinct (origin, reason, path) with counts
summing to the handshakes sent, and accepted handshakes still answered 101 during the flood.

The test sends 10,000 rejected handshakes, to stay within about 30 seconds on a shared two-core
machine; the benchmark (bench/flood.py) sends the full 20,000 and also measures the accepted rate and
the server's memory. Here nothing is timed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from bench.common import handshake_once
from bench.flood import APP, FLOOD_KEYS, HOST, SETTINGS, TRUSTED, flood

pytestmark = pytest.mark.daphne

TOTAL = 10_000
CONCURRENCY = 20
# Accepted handshakes made while the flood runs: a bounded number, well under HANDSHAKE_RATE.
MAX_ACCEPTED = 300
AUDIT_WAIT_SECONDS = 60


async def flood_with_accepted(port: int) -> tuple[object, list[int]]:
    flooding = asyncio.ensure_future(flood(port, TOTAL, CONCURRENCY))
    statuses: list[int] = []
    while not flooding.done() and len(statuses) < MAX_ACCEPTED:
        statuses.append(await handshake_once(port, "/ws/echo/", [("Origin", TRUSTED)], HOST, answer_within=30))
        await asyncio.sleep(0.05)
    return await flooding, statuses


def audit_rows(path: str) -> dict[tuple[str, str, str], int]:
    with sqlite3.connect(path, timeout=10) as db:
        rows = db.execute("SELECT origin, reason, path, count FROM wsguard_handshakerejection").fetchall()
    return {(o, r, p): c for o, r, p, c in rows}


def test_a_flood_of_rejected_handshakes_is_logged_sparingly_audited_per_key_and_does_not_block_accepts(
    daphne_factory, migrated_database_url
):
    overrides = {"AUDIT_FLUSH_SECONDS": 1.0}
    server = daphne_factory(
        APP,
        DJANGO_SETTINGS_MODULE=SETTINGS,
        DATABASE_URL=migrated_database_url,
        WSGUARD_TEST_OVERRIDES=json.dumps(overrides),
    )
    result, accepted = asyncio.run(flood_with_accepted(server.port))

    assert result.count(403) == TOTAL, result.summary()
    assert accepted, "no accepted handshake was attempted during the flood"
    assert accepted == [101] * len(accepted), accepted
    print(f"\n{result.summary()}; {len(accepted)} accepted handshakes during it, all 101")

    # The audit: one row per distinct key, counts summing to what was sent (after its flush).
    database = migrated_database_url.removeprefix("sqlite:///")
    expected = {key.audit_key: TOTAL // len(FLOOD_KEYS) for key in FLOOD_KEYS}
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    rows = audit_rows(database)
    while sum(rows.values()) < TOTAL and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = audit_rows(database)
    assert rows == expected

    # Accepted handshakes are answered after the flood too.
    assert asyncio.run(handshake_once(server.port, "/ws/echo/", [("Origin", TRUSTED)], HOST)) == 101

    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    lines = [line for line in log.splitlines() if "wsguard denied websocket handshake" in line]
    suppressed = [line for line in lines if "similar lines suppressed by the rate limit" in line]
    # LOG_BURST (50) plus LOG_RATE (10/s) over the flood's duration: far fewer than one per denial.
    assert 0 < len(lines) < TOTAL // 10, len(lines)
    assert suppressed, "no line reports the suppressed count"
    assert not any("sessionid" in line or "Cookie" in line for line in lines)
    print(f"{len(lines)} wsguard lines for {TOTAL} denials, {len(suppressed)} with a suppressed count")
