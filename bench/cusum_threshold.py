"""Calibrate the default CUSUM threshold by simulation.

Usage: python bench/cusum_threshold.py [--points 20000000] [--target 0.025]

For each no-drift stream kind of bench_detection.py whose standardised form
differs (normal, which stands for any continuous feature, since the CDF
transform makes them all alike; lognormal, as a check of that; Poisson(3),
discrete, whose standardised values are tied and skewed), ``--points``
points are standardised through their own baseline CDF, as the monitor does,
split over 10 baselines so the baseline's sampling noise is in the figure.
The CUSUM with the default shifts counts its false alarms (resetting after
each) at thresholds where they are frequent enough to count well; the log
of the alarm rate is close to linear in the threshold (Siegmund's
approximation: the in-control run length grows like exp(theta * threshold)),
so a straight-line fit gives the threshold at ``--target`` alarms per
100,000 points for each kind. The default is the largest of those, rounded
up to a quarter, then checked directly on the same streams.

Run of record (2 cores, 40 s), 20M points per kind, target 0.035 per 100k
(0.05 is the budget; the margin covers the rate's own noise):

    alarms per 100k at threshold    9      10     11     12    fitted at 0.035
    normal                        2.995  1.010  0.380  0.120   13.19
    lognormal                     2.815  1.105  0.410  0.125   13.30
    poisson                       3.910  1.420  0.565  0.210   13.85

    chosen 14.0; measured there: normal 0.015, lognormal 0.015, poisson 0.030

This is ``DEFAULT_THRESHOLD`` in driftstream.core.detectors.cusum.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from bench_detection import no_drift_stream
from driftstream.core.detectors import CUSUM
from driftstream.core.detectors.cusum import DEFAULT_SHIFTS

KINDS = ("normal", "lognormal", "poisson")
GRID = (9.0, 10.0, 11.0, 12.0)
BASELINES = 10


def alarm_rate(z: list[np.ndarray], threshold: float) -> float:
    """False alarms per 100,000 points over the streams ``z``."""
    hits = sum(CUSUM(DEFAULT_SHIFTS, threshold).update_many(part).size for part in z)
    return 1e5 * hits / sum(part.size for part in z)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000_000, help="per kind")
    parser.add_argument("--target", type=float, default=0.035, help="alarms per 100k")
    args = parser.parse_args()
    per_baseline = args.points // BASELINES
    streams = {
        kind: [no_drift_stream(kind, per_baseline, seed=100 + s)[1] for s in range(BASELINES)]
        for kind in KINDS
    }
    print(f"{'kind':<12}" + "".join(f"{h:>9.2f}" for h in GRID) + "   threshold at target")
    fitted: dict[str, float] = {}
    rates: dict[str, list[float]] = {}
    for kind, z in streams.items():
        rates[kind] = [alarm_rate(z, h) for h in GRID]
        slope, intercept = np.polyfit(GRID, np.log(rates[kind]), 1)
        fitted[kind] = (math.log(args.target) - intercept) / slope
        cells = "".join(f"{r:>9.3f}" for r in rates[kind])
        print(f"{kind:<12}{cells}   {fitted[kind]:.2f}")
    chosen = math.ceil(max(fitted.values()) * 4) / 4
    check = {kind: alarm_rate(z, chosen) for kind, z in streams.items()}
    print(f"\nchosen threshold {chosen} (target {args.target} per 100k)")
    for kind, rate in check.items():
        print(f"  {kind:<10} measured {rate:.4f} per 100k on {args.points:,} points")
    print(
        json.dumps(
            {"grid": GRID, "rates": rates, "fitted": fitted, "threshold": chosen, "check": check}
        )
    )


if __name__ == "__main__":
    main()
