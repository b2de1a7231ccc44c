"""False alarms of the windowed tests: drift statistics and quality checks on no-drift data.

Usage: python bench/bench_windows.py [--quick] [--windows 10000]

For each stream shape (N(0,1); the same x1000+5000; lognormal; Poisson(3))
a baseline of 20,000 values is profiled, and a monitor with the default
statistics (PSI, JS, KS, Wasserstein) and quality checks (missing,
out_of_range, stuck), and no sequential detectors, judges ``--windows``
no-drift windows. Three settings:

- windows of 5,000 events (the default), fixed thresholds;
- windows of 200 events (the default ``min_count``), fixed thresholds;
- windows of 200 events with the false-alarm budget (0.1 per day), one
  event every 0.05 s, in a model of 12 such columns.

Counts every window alert (an episode opening: it then stays open while
the windows stay bad, so the count is of episodes, not windows) and every
window whose statistics crossed a threshold, per 10,000 windows. Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from driftstream.core.baseline import build_profile
from driftstream.core.batch import Batch
from driftstream.core.budget import Budget
from driftstream.core.monitor import ModelMonitor, settings_from_baseline
from driftstream.core.settings import WindowSettings

BASELINE = 20_000
SHAPES = ("normal", "scaled", "lognormal", "poisson")
COLUMNS = 12  # the model the budget is shared over
STEP = 0.05  # seconds of event time between events


def draw(shape: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if shape == "normal":
        return rng.normal(size=n)
    if shape == "scaled":
        return rng.normal(size=n) * 1000.0 + 5000.0
    if shape == "lognormal":
        return np.exp(rng.normal(size=n))
    return rng.poisson(3.0, n).astype(np.float64)


def run(shape: str, windows: int, size: int, budget: Budget | None, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    baseline = build_profile({"x": draw(shape, rng, BASELINE)}, model_id="bench")
    settings = settings_from_baseline(baseline, window=WindowSettings(size=size, min_count=size))
    features = tuple(replace(f, detectors=()) for f in settings.features)
    # the budget is shared as in a model of COLUMNS such columns
    settings = replace(settings, features=features, budget=budget, budget_monitors=COLUMNS)
    monitor = ModelMonitor(settings, baseline)
    opened = {"drift": 0, "quality": 0}
    crossed = 0
    chunk = max(size, 100_000 // size * size)
    total = windows * size
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        ts = (start + np.arange(n)) * STEP
        for finding in monitor.update(Batch(ts, {"x": draw(shape, rng, n)})):
            if finding.kind in opened:
                opened[finding.kind] += 1
        crossed += sum(
            reading.value >= reading.threshold
            for reading in monitor.readings
            if reading.threshold is not None
        )
    per = 10_000 / windows
    return {
        "drift_alerts": opened["drift"] * per,
        "quality_alerts": opened["quality"] * per,
        "statistics_crossed": crossed * per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 windows (CI)")
    parser.add_argument("--windows", type=int, default=10_000)
    args = parser.parse_args()
    windows = 1_000 if args.quick else args.windows
    settings = {
        "5000, fixed": (5000, None),
        "200, fixed": (200, None),
        "200, budget 0.1/day": (200, Budget(0.1)),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    started = time.perf_counter()
    for label, (size, budget) in settings.items():
        results[label] = {}
        for seed, shape in enumerate(SHAPES):
            results[label][shape] = run(shape, windows, size, budget, seed)
    print(f"no-drift windows per setting and shape: {windows:,}; per 10,000 windows:")
    print(
        f"{'windows':<22}{'shape':<11}{'drift alerts':>14}{'quality alerts':>16}"
        f"{'values past a fixed threshold':>36}"
    )
    for label, shapes in results.items():
        for shape, figures in shapes.items():
            print(
                f"{label:<22}{shape:<11}{figures['drift_alerts']:>14.1f}"
                f"{figures['quality_alerts']:>16.1f}{figures['statistics_crossed']:>36.1f}"
            )
    print(f"({time.perf_counter() - started:.0f} s)")
    print(json.dumps({"windows": windows, "results": results}))


if __name__ == "__main__":
    main()
