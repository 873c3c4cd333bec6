"""Handshakes per second through a real daphne with 100,000 TrustedOrigin rows in the policy,
against the same daphne application with no guard at all, measured side by side in one run.

    .venv/bin/python bench/handshake_rate.py [--rows 100000] [--handshakes 1000] [--rounds 12]

Both servers serve tests.origin_app (the same echo consumer): ``guarded`` wraps it in OriginGuard
and the live-socket watch, ``unguarded`` does not. Each round measures both back to back (the order
alternates between rounds) so that load from other processes on a shared machine hits both alike;
the figure is the median of the per-round ratios, with the median rates beside it. The origin
sent is trusted by one of the database rows (the guarded server answers 101, like the baseline).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LoadResult, daphne, run_load, warm_up  # noqa: E402
from tests.servers import raw_handshake  # noqa: E402

TARGET = 0.9


def migrated_sqlite(directory: Path) -> str:
    url = f"sqlite:///{directory / 'bench.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return url


def insert_rows(url: str, rows: int) -> None:
    # Normalised texts, as TrustedOrigin.save() stores them; written in bulk for speed.
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.executemany(
            "INSERT INTO wsguard_trustedorigin (origin, is_active, path_prefix, note, created_at, updated_at) "
            "VALUES (?, 1, ?, '', datetime('now'), datetime('now'))",
            ((f"https://tenant{i}.example", "/ws/" if i % 10 == 0 else "") for i in range(rows)),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wsguard-bench-") as tmp:
        directory = Path(tmp)
        url = migrated_sqlite(directory)
        insert_rows(url, args.rows)
        trusted = f"https://tenant{args.rows - 1}.example"
        headers = [("Origin", trusted)]
        env = {"DATABASE_URL": url, "REDIS_URL": ""}
        started = time.perf_counter()
        with (
            daphne("tests.origin_app:guarded", tmp_dir=directory, timeout=120, **env) as guarded,
            daphne("tests.origin_app:unguarded", tmp_dir=directory, timeout=120, **env) as unguarded,
        ):
            ready = time.perf_counter() - started
            assert raw_handshake(guarded.port, headers=headers)[0] == 101, guarded.log()[-2000:]
            assert raw_handshake(guarded.port, headers=[("Origin", "https://evil.example")])[0] == 403
            warm_up(guarded.port, headers)
            warm_up(unguarded.port, headers)
            guarded_runs: list[LoadResult] = []
            baseline_runs: list[LoadResult] = []
            for i in range(args.rounds):
                pair = [(baseline_runs, unguarded.port), (guarded_runs, guarded.port)]
                for runs, port in pair if i % 2 == 0 else reversed(pair):
                    runs.append(run_load(port, args.handshakes, args.concurrency, headers=headers))
        for run in guarded_runs + baseline_runs:
            assert run.count(101) == args.handshakes, run.summary()

    g = statistics.median(r.rate for r in guarded_runs)
    b = statistics.median(r.rate for r in baseline_runs)
    ratio = statistics.median(gr.rate / br.rate for gr, br in zip(guarded_runs, baseline_runs, strict=True))
    print(f"rows in the policy: {args.rows:,} TrustedOrigin (+ settings patterns); servers ready in {ready:.1f}s")
    print(f"handshakes per round: {args.handshakes:,} at concurrency {args.concurrency}; {args.rounds} rounds")
    for name, runs in (("no guard  ", baseline_runs), ("wsguard   ", guarded_runs)):
        print(f"  {name}: " + ", ".join(f"{r.rate:,.0f}/s" for r in runs))
    print(f"median rates: wsguard {g:,.0f}/s, no guard {b:,.0f}/s")
    print(f"median paired ratio: {ratio:.2f}x of the unguarded rate (target >= {TARGET})")


if __name__ == "__main__":
    main()
