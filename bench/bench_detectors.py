"""Throughput of ADWIN and Page-Hinkley: river's loop, our loop, our batch update.

Usage: python bench/bench_detectors.py [--n 200000] [--repeat 3]

Streams (seeded):
  shifts    unit noise whose mean jumps every 5,000 points (the usual case)
  noise     unit noise, no drift
  frequent  0/1 stream flipping between p=0.1 and p=0.9 every 200 points,
            so the detectors fire every few hundred points (the worst case
            for batching, since work past a detection is thrown away)

Banks: many detectors (the settings' defaults, each warmed up with 50,000
unit-noise points) take one column each per micro-batch, as a worker's
monitors do: a loop of update_many against update_adwins/update_page_hinkleys,
for 1000 detectors x 200 values and 12 detectors x 20,000 values. Each of
--repeat rounds feeds new columns (state carries over); the best round counts.

Prints tables, then one JSON line: {"adwin": {...}, "page_hinkley": {...},
"bank": {...}}. All ways must report the same detections (and the banks the
same final states); the script stops if not.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from river import drift

from driftstream.core.detectors import ADWIN, PageHinkley, update_adwins, update_page_hinkleys
from driftstream.core.settings import DEFAULT_ADWIN, DEFAULT_PAGE_HINKLEY

BANKS = {
    "adwin": (ADWIN, DEFAULT_ADWIN, update_adwins),
    "page_hinkley": (PageHinkley, DEFAULT_PAGE_HINKLEY, update_page_hinkleys),
}
BANK_SHAPES = [(1000, 200), (12, 20_000)]
WARM_UP = 50_000


def make_streams(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    means = np.repeat(rng.choice([-1.0, 1.0], size=n // 5000 + 1).cumsum(), 5000)[:n]
    p = np.repeat(np.tile([0.1, 0.9], n // 400 + 1), 200)[:n]
    return {
        "shifts": means + rng.normal(0.0, 1.0, n),
        "noise": rng.normal(0.0, 1.0, n),
        "frequent": (rng.random(n) < p).astype(np.float64),
    }


def loop(detector: Any, values: np.ndarray) -> list[int]:
    hits = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            hits.append(i)
    return hits


def best_time(run: Callable[[], list[int]], repeat: int) -> tuple[float, list[int]]:
    best, hits = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        hits = run()
        best = min(best, time.perf_counter() - start)
    return best, hits


def measure(river_cls: Any, our_cls: Any, values: np.ndarray, repeat: int) -> dict[str, Any]:
    river_s, river_hits = best_time(lambda: loop(river_cls(), values), repeat)
    loop_s, loop_hits = best_time(lambda: loop(our_cls(), values), repeat)
    many_s, many_hits = best_time(lambda: our_cls().update_many(values).tolist(), repeat)
    if not river_hits == loop_hits == many_hits:
        raise SystemExit(f"detections differ for {our_cls.__name__}")
    n = values.size
    return {
        "detections": len(river_hits),
        "river_loop_eps": round(n / river_s),
        "our_loop_eps": round(n / loop_s),
        "update_many_eps": round(n / many_s),
        "many_vs_river": round(river_s / many_s, 2),
        "many_vs_our_loop": round(loop_s / many_s, 2),
    }


def update_each(detectors: list[Any], columns: list[np.ndarray]) -> list[np.ndarray]:
    return [d.update_many(c) for d, c in zip(detectors, columns, strict=True)]


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def measure_bank(name: str, count: int, length: int, repeat: int) -> dict[str, Any]:
    """A loop of update_many against the bank, over ``repeat`` micro-batches."""
    cls, params, bank = BANKS[name]
    rng = np.random.default_rng(7)
    looped = []
    for _ in range(count):
        detector = cls(**params)
        detector.update_many(rng.normal(0.0, 1.0, WARM_UP))
        looped.append(detector)
    banked = copy.deepcopy(looped)
    loop_s, bank_s, detections = float("inf"), float("inf"), 0
    for _ in range(repeat):
        columns = [rng.normal(0.0, 1.0, length) for _ in range(count)]
        took, loop_hits = timed(partial(update_each, looped, columns))
        loop_s = min(loop_s, took)
        took, bank_hits = timed(partial(bank, banked, columns))
        bank_s = min(bank_s, took)
        pairs = zip(loop_hits, bank_hits, strict=True)
        same_hits = all(a.tolist() == b.tolist() for a, b in pairs)
        if not same_hits or [d.to_state() for d in looped] != [d.to_state() for d in banked]:
            raise SystemExit(f"the {name} bank differs from update_many")
        detections += sum(h.size for h in loop_hits)
    return {
        "detectors": count,
        "values": length,
        "detections": detections,
        "loop_ms": round(loop_s * 1e3, 2),
        "bank_ms": round(bank_s * 1e3, 2),
        "loop_us_per_detector": round(loop_s / count * 1e6, 1),
        "bank_us_per_detector": round(bank_s / count * 1e6, 1),
        "bank_vs_loop": round(loop_s / bank_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="points per stream")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    streams = make_streams(args.n)
    detectors = {"adwin": (drift.ADWIN, ADWIN), "page_hinkley": (drift.PageHinkley, PageHinkley)}
    results: dict[str, dict[str, Any]] = {}
    header = f"{'detector':<13}{'stream':<10}{'hits':>6}{'river loop':>14}{'our loop':>14}"
    print(f"{header}{'update_many':>14}{'vs river':>10}{'vs loop':>9}   (events/s)")
    for name, (river_cls, our_cls) in detectors.items():
        results[name] = {}
        for stream, values in streams.items():
            row = measure(river_cls, our_cls, values, args.repeat)
            results[name][stream] = row
            print(
                f"{name:<13}{stream:<10}{row['detections']:>6}"
                f"{row['river_loop_eps']:>14,}{row['our_loop_eps']:>14,}"
                f"{row['update_many_eps']:>14,}{row['many_vs_river']:>9}x"
                f"{row['many_vs_our_loop']:>8}x"
            )
    results["bank"] = {}
    print(f"\n{'bank':<13}{'shape':>13}{'hits':>6}{'loop ms':>10}{'bank ms':>10}{'vs loop':>9}")
    for name in BANKS:
        for count, length in BANK_SHAPES:
            row = measure_bank(name, count, length, args.repeat)
            results["bank"][f"{name}_{count}x{length}"] = row
            shape = f"{count}x{length}"
            print(
                f"{name:<13}{shape:>13}{row['detections']:>6}{row['loop_ms']:>10}"
                f"{row['bank_ms']:>10}{row['bank_vs_loop']:>8}x"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
