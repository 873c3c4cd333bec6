"""Cost of one Origin decision: wsguard's compiled OriginMatcher beside Channels' OriginValidator.

Run it from the repository root (not a test; it prints, it asserts nothing)::

    .venv/bin/python bench/origin_match.py            # 10, 1,000, 100,000 and 1,000,000 patterns
    .venv/bin/python bench/origin_match.py --sizes 10 1000

Both sides get equivalent pattern lists (half exact origins, some on a non-default port, half
subdomain wildcards: ``https://*.tN.com`` for wsguard, ``https://.tN.com`` in Channels' syntax)
and the same Origin header values, a fixed mix of hits and misses (exact hit, wildcard hit at
depth one and two, sibling port, other scheme, look-alike suffix, unknown site). A decision is
what each guard does per handshake: wsguard ``matcher.match(parse_origin(value))``, Channels
``validator.valid_origin(urlparse(value))``. Channels scans its list, so at 100,000 and 1,000,000
patterns only a handful of its decisions are timed; the numbers are per decision either way.

The patterns are compiled through the real ``parse_pattern`` (no shortcuts), which is also timed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

import channels  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402

from wsguard.origins import OriginMatcher, parse_origin, parse_pattern  # noqa: E402

DEFAULT_SIZES = (10, 1_000, 100_000, 1_000_000)
# Decisions timed per size for Channels: its cost is linear in the list, keep the run bounded.
CHANNELS_DECISIONS = {10: 20_000, 1_000: 400, 100_000: 16, 1_000_000: 8}
WSGUARD_DECISIONS = 200_000


def exact_host(i: int) -> str:
    return f"h{i}.site{i % 997}.example.com"


def wild_suffix(i: int) -> str:
    return f"t{i}.com"


def port_of(i: int) -> int | None:
    return 8443 if i % 10 == 0 else None


def pattern_texts(size: int) -> tuple[list[str], list[str]]:
    """(wsguard patterns, Channels patterns), equivalent entry by entry."""
    ours: list[str] = []
    theirs: list[str] = []
    for i in range(size):
        if i % 2 == 0:
            port = port_of(i)
            suffix = f":{port}" if port else ""
            text = f"https://{exact_host(i)}{suffix}"
            ours.append(text)
            theirs.append(text)
        else:
            ours.append(f"https://*.{wild_suffix(i)}")
            # Channels' leading-dot form also trusts the apex; the inputs never use an apex.
            theirs.append(f"https://.{wild_suffix(i)}")
    return ours, theirs


def origin_values(size: int, count: int, seed: int = 7) -> list[tuple[str, bool]]:
    """``count`` Origin values with the expected verdict, hits and misses interleaved."""
    rng = random.Random(seed)
    values: list[tuple[str, bool]] = []
    for n in range(count):
        kind = n % 8
        even = rng.randrange(0, size, 2) if size > 1 else 0
        odd = rng.randrange(1, size, 2) if size > 1 else 1
        port = port_of(even)
        port_text = f":{port}" if port else ""
        if kind == 0:
            values.append((f"https://{exact_host(even)}{port_text}", True))
        elif kind == 1:
            values.append((f"https://app.{wild_suffix(odd)}", True))
        elif kind == 2:
            values.append((f"https://a.b.{wild_suffix(odd)}", True))
        elif kind == 3:
            values.append((f"https://{exact_host(even)}:{(port or 443) + 1}", False))
        elif kind == 4:
            values.append((f"http://{exact_host(even)}{port_text}", False))
        elif kind == 5:
            values.append((f"https://{exact_host(even)}.evil.net", False))
        elif kind == 6:
            values.append((f"https://evil{wild_suffix(odd)}", False))
        else:
            values.append((f"https://unknown{n}.example.org", False))
    return values


def per_decision(decide: Callable[[str], bool], inputs: Sequence[tuple[str, bool]], decisions: int) -> float:
    """Seconds per decision, best of three runs (one run when the sample is small, i.e. slow).
    Every verdict is checked against the expected one after the run that produced it."""
    n = len(inputs)
    best = float("inf")
    for _ in range(3 if decisions >= 100 else 1):
        gc.collect()
        start = time.perf_counter()
        verdicts = [decide(inputs[k % n][0]) for k in range(decisions)]
        best = min(best, (time.perf_counter() - start) / decisions)
        for k, got in enumerate(verdicts):
            value, expected = inputs[k % n]
            if got != expected:
                raise SystemExit(f"wrong verdict for {value!r}: {got} (expected {expected})")
    return best


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds * 1e6:,.2f} µs"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    args = parser.parse_args(argv)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpu(s), {platform.processor() or 'unknown cpu'}; "
        f"Python {platform.python_version()}, Django {django.get_version()}, Channels {channels.__version__}"
    )
    header = (
        f"{'patterns':>10} | {'compile (parse_pattern)':>23} | {'wsguard / decision':>18} | "
        f"{'of which match()':>16} | {'match(), 8 origins':>18} | {'channels / decision':>19} | "
        f"{'channels/wsguard':>16}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[int, tuple[float, float, float, float]] = {}
    for size in args.sizes:
        ours, theirs = pattern_texts(size)
        start = time.perf_counter()
        matcher = OriginMatcher.compile([parse_pattern(text) for text in ours])
        compile_seconds = time.perf_counter() - start
        inputs = origin_values(size, 4_096)

        def wsguard_decide(value: str, matcher: OriginMatcher = matcher) -> bool:
            origin = parse_origin(value)
            return not isinstance(origin, str) and matcher.match(origin) is not None

        parsed = {value: parse_origin(value) for value, _ in inputs}

        def wsguard_match_only(value: str, matcher: OriginMatcher = matcher, parsed: dict = parsed) -> bool:
            return matcher.match(parsed[value]) is not None

        validator = OriginValidator(None, theirs)

        def channels_decide(value: str, validator: OriginValidator = validator) -> bool:
            return bool(validator.valid_origin(urlparse(value)))

        ws = per_decision(wsguard_decide, inputs, WSGUARD_DECISIONS)
        ws_match = per_decision(wsguard_match_only, inputs, WSGUARD_DECISIONS)
        # The same eight origins over and over (one of each kind): what is left once the table
        # lines a real site's few origins touch are in the CPU cache.
        ws_warm = per_decision(wsguard_match_only, inputs[:8], WSGUARD_DECISIONS)
        ch_decisions = CHANNELS_DECISIONS.get(size, max(4, 2_000_000 // max(size, 1)))
        # A small sample still alternates hits and misses (8 kinds, in order).
        ch = per_decision(channels_decide, inputs, ch_decisions)
        rows[size] = (ws, ws_match, ch, ws_warm)
        print(
            f"{size:>10,} | {compile_seconds:>21.2f} s | {fmt(ws):>18} | {fmt(ws_match):>16} | "
            f"{fmt(ws_warm):>18} | {fmt(ch):>19} | {ch / ws:>15,.0f}x",
            flush=True,
        )
        del matcher, validator, ours, theirs
    if len(rows) > 1:
        smallest, largest = min(rows), max(rows)
        print()
        print(
            f"wsguard flatness: {largest:,} patterns / {smallest:,} patterns = "
            f"{rows[largest][0] / rows[smallest][0]:.2f}x per decision, "
            f"{rows[largest][1] / rows[smallest][1]:.2f}x for match() alone, "
            f"{rows[largest][3] / rows[smallest][3]:.2f}x for match() on 8 warm origins (target: within 2x)"
        )
    if 1_000 in rows:
        print(f"Channels / wsguard at 1,000 patterns = {rows[1_000][2] / rows[1_000][0]:,.0f}x (target: >= 100x)")


if __name__ == "__main__":
    main()
