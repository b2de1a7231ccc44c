"""Detection delay and false alarms: our ADWIN, Page-Hinkley and CUSUM against river's.

Usage: python bench/bench_detection.py [--quick] [--seeds 50] [--no-drift 10000000]

Streams (seeded), each with its own baseline of 20,000 no-drift points:
  normal     N(0, 1)
  scaled     N(0, 1) x 1000 + 5000
  lognormal  exp(N(0, 1)); its shifts are in log space (the raw values are
             multiplied by exp(shift)), so the standardised stream is the
             same as the normal one's up to baseline noise
  poisson    Poisson(3) counts (no-drift streams only)

Our detectors see the values standardised as the monitor does: through the
baseline's CDF (``build_profile``, default bins), centred and scaled to unit
variance. river's detectors get the raw values, with river's defaults, as a
user of river would feed them. Ours use the monitor defaults (settings
``DEFAULT_ADWIN``, ``DEFAULT_PAGE_HINKLEY``, ``DEFAULT_CUSUM``). The row
``monitor`` is what a monitor with its defaults reports: the first of the
three to fire (its false alarms: the three detectors' summed). The row
``cusum_budgeted`` is the CUSUM at the threshold the default budget
(``alerts.false_alarms_per_day`` 0.1) sets for a model of 12 numeric
features at 1,000 events/s with 5,000-event windows: the delay that paging
at most once in ten days costs.

Delay: 100,000 points with a mean shift of 0.5 or 1 sd (of the raw feature)
at 50,000; the delay is the first detection at or after the change minus
50,000 (a miss if none by the end). Median and p90 over the seeds.
False alarms: detections per 100,000 points on no-drift streams (each
detector resets after a detection). ADWIN's clock quantises its delays, so
ADWIN is also run with clock 32 and 16.

Prints tables, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from river import drift

from driftstream.core.baseline import NumericProfile, build_profile
from driftstream.core.budget import Budget
from driftstream.core.detectors import ADWIN, CUSUM, PageHinkley
from driftstream.core.detectors.cusum import threshold_for_rate
from driftstream.core.quality import CHECKS_PER_COLUMN
from driftstream.core.settings import DEFAULT_ADWIN, DEFAULT_CUSUM, DEFAULT_PAGE_HINKLEY

SQRT12 = math.sqrt(12.0)
BASELINE = 20_000
LENGTH = 100_000
CHANGE = 50_000
SHIFTS = (0.5, 1.0)
DRIFT_KINDS = ("normal", "scaled", "lognormal")
NO_DRIFT_KINDS = ("normal", "scaled", "lognormal", "poisson")
RIVER_NO_DRIFT = 1_000_000


def raw(kind: str, rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """``n`` values of ``kind``, shifted by ``shift`` sd (in log space for lognormal)."""
    if kind == "normal":
        return rng.normal(shift, 1.0, n)
    if kind == "scaled":
        return (rng.normal(0.0, 1.0, n) + shift) * 1000.0 + 5000.0
    if kind == "lognormal":
        return np.exp(rng.normal(shift, 1.0, n))
    if kind == "poisson":
        return rng.poisson(3.0, n).astype(np.float64)
    msg = f"unknown stream kind {kind!r}"
    raise ValueError(msg)


def profile_of(kind: str, rng: np.random.Generator) -> NumericProfile:
    profile = build_profile({"x": raw(kind, rng, BASELINE)}, model_id="bench").features["x"]
    assert isinstance(profile, NumericProfile)
    return profile


def standardised(profile: NumericProfile, values: np.ndarray) -> np.ndarray:
    """As ``FeatureWatch.standardised`` in the monitor."""
    return (profile.cdf(values) - 0.5) * SQRT12


def drift_stream(kind: str, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw values and their standardised form, the mean moving by ``shift`` at ``CHANGE``."""
    rng = np.random.default_rng([seed, int(shift * 100), DRIFT_KINDS.index(kind)])
    profile = profile_of(kind, rng)
    values = np.concatenate([raw(kind, rng, CHANGE), raw(kind, rng, LENGTH - CHANGE, shift)])
    return values, standardised(profile, values)


def no_drift_stream(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 7, NO_DRIFT_KINDS.index(kind)])
    profile = profile_of(kind, rng)
    values = raw(kind, rng, n)
    return values, standardised(profile, values)


# -- detectors -----------------------------------------------------------------

Ours = Callable[[], Any]


def ours() -> dict[str, Ours]:
    return {
        "adwin": lambda: ADWIN(**DEFAULT_ADWIN),
        "page_hinkley": lambda: PageHinkley(**DEFAULT_PAGE_HINKLEY),
        "cusum": lambda: CUSUM(**DEFAULT_CUSUM),
    }


MONITOR = "monitor"


def budgeted_threshold(features: int = 12, rate: float = 1000.0, window: int = 5000) -> float:
    """The CUSUM threshold the default budget sets for that model (as ``ModelMonitor``)."""
    tests = features * (1 + CHECKS_PER_COLUMN + 1)  # gate, quality checks, CUSUM
    level = Budget().level(tests, window / rate)
    return threshold_for_rate(level / window)


def budgeted() -> dict[str, Ours]:
    threshold = budgeted_threshold()
    return {"cusum_budgeted": lambda: CUSUM(**{**DEFAULT_CUSUM, "threshold": threshold})}


def adwin_clocks() -> dict[str, Ours]:
    return {
        f"adwin_clock_{clock}": (lambda c=clock: ADWIN(**{**DEFAULT_ADWIN, "clock": c}))
        for clock in (128, 32, 16)
    }


RIVER: dict[str, Callable[[], Any]] = {
    "river_adwin": drift.ADWIN,
    "river_page_hinkley": drift.PageHinkley,
}


def first_after(positions: np.ndarray, start: int) -> float:
    later = positions[positions >= start]
    return float(later[0] - start) if later.size else math.nan


def river_first_after(make: Callable[[], Any], values: np.ndarray, start: int) -> float:
    detector = make()
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected and i >= start:
            return float(i - start)
    return math.nan


def river_count(make: Callable[[], Any], values: np.ndarray) -> int:
    detector, hits = make(), 0
    for x in values.tolist():
        detector.update(x)
        hits += detector.drift_detected
    return hits


def summary(delays: list[float]) -> dict[str, float | int]:
    found = np.asarray([d for d in delays if not math.isnan(d)])
    if not found.size:
        return {"median": math.nan, "p90": math.nan, "missed": len(delays)}
    # A miss counts as slower than any detection for the median and p90.
    padded = np.concatenate([found, np.full(len(delays) - found.size, np.inf)])
    return {
        "median": float(np.median(padded)),
        "p90": float(np.percentile(padded, 90, method="higher")),
        "missed": len(delays) - int(found.size),
    }


def delays(seeds: int, with_river: bool) -> dict[str, Any]:
    makers = {**ours(), **budgeted(), **adwin_clocks()}
    names = [MONITOR, *makers] + (list(RIVER) if with_river else [])
    out: dict[str, Any] = {}
    for shift in SHIFTS:
        for kind in DRIFT_KINDS:
            runs: dict[str, list[float]] = {name: [] for name in names}
            for seed in range(seeds):
                values, z = drift_stream(kind, shift, seed)
                for name, make in makers.items():
                    runs[name].append(first_after(make().update_many(z), CHANGE))
                fired = [runs[name][-1] for name in ours() if not math.isnan(runs[name][-1])]
                runs[MONITOR].append(min(fired, default=math.nan))
                if with_river:
                    for name, river_make in RIVER.items():
                        runs[name].append(river_first_after(river_make, values, CHANGE))
            for name in names:
                out.setdefault(name, {})[f"{kind}@{shift}"] = summary(runs[name])
    return out


def false_alarms(n: int, river_n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in NO_DRIFT_KINDS:
        values, z = no_drift_stream(kind, n, seed=0)
        total = 0
        for name, make in ours().items():
            hits = make().update_many(z).size
            out.setdefault(name, {})[kind] = 1e5 * hits / n
            total += hits
        out.setdefault(MONITOR, {})[kind] = 1e5 * total / n
        if river_n:
            for name, river_make in RIVER.items():
                hits = river_count(river_make, values[:river_n])
                out.setdefault(name, {})[kind] = 1e5 * hits / river_n
    return out


def show(title: str, table: dict[str, Any], columns: list[str], cell: Callable[[Any], str]) -> None:
    print(f"\n{title}")
    print(f"{'detector':<20}" + "".join(f"{c:>18}" for c in columns))
    for name, row in table.items():
        print(f"{name:<20}" + "".join(f"{cell(row.get(c)):>18}" for c in columns))


def delay_cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value['median']:.0f} / {value['p90']:.0f}"
    return text + (f" ({value['missed']} miss)" if value["missed"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, 500k no-drift points")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--no-drift", type=int, default=10_000_000, help="points per kind, ours")
    parser.add_argument("--river-no-drift", type=int, default=RIVER_NO_DRIFT)
    parser.add_argument("--no-river", action="store_true")
    args = parser.parse_args()
    seeds, n, river_n = args.seeds, args.no_drift, args.river_no_drift
    if args.quick:
        seeds, n, river_n = 5, 500_000, 200_000
    if args.no_river:
        river_n = 0
    started = time.perf_counter()
    delay = delays(seeds, not args.no_river)
    alarms = false_alarms(n, river_n)
    columns = [f"{kind}@{shift}" for shift in SHIFTS for kind in DRIFT_KINDS]
    print(f"delay after the change at {CHANGE:,} of {LENGTH:,}: median / p90 over {seeds} seeds")
    print("(shift in sd of the raw feature; lognormal shifted in log space)")
    show("delay (events)", delay, columns, delay_cell)
    note = f"ours on {n:,} points per kind" + (f", river on {river_n:,}" if river_n else "")
    show(
        f"false alarms per 100k events, no drift ({note})",
        alarms,
        list(NO_DRIFT_KINDS),
        lambda v: "-" if v is None else f"{v:.3f}",
    )
    elapsed = time.perf_counter() - started
    default = DEFAULT_CUSUM["threshold"]
    print(f"\ncusum_budgeted: threshold {budgeted_threshold()} (default {default})")
    print(f"\n{elapsed:.0f} s")
    result = {
        "seeds": seeds,
        "no_drift_points": n,
        "river_no_drift_points": river_n,
        "delay": delay,
        "false_alarms_per_100k": alarms,
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(result, allow_nan=True))


if __name__ == "__main__":
    main()
