"""Throughput of ADWIN and Page-Hinkley: river's loop, our loop, our batch update.

Usage: python bench/bench_detectors.py [--n 200000] [--repeat 3]

Streams (seeded):
  shifts    unit noise whose mean jumps every 5,000 points (the usual case)
  noise     unit noise, no drift
  frequent  0/1 stream flipping between p=0.1 and p=0.9 every 200 points,
            so the detectors fire every few hundred points (the worst case
            for batching, since work past a detection is thrown away)

Prints a table, then one JSON line: {"adwin": {...}, "page_hinkley": {...}}.
All three ways must report the same detections; the script stops if not.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from river import drift

from driftstream.core.detectors import ADWIN, PageHinkley


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
    print(json.dumps(results))


if __name__ == "__main__":
    main()
