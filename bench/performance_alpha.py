"""False alarms and power of the performance rule, measured on simulated windows.

A baseline of ``--rows`` pairs records each metric's value and bootstrap
spread (``core/performance.py``); then ``--windows`` windows per size are
drawn from the same model and judged with the default z and tolerance. The
share judged worse is the rule's false-alarm rate per window and metric.
The same is done after a real degradation, to show what the rule catches:

- classification: a calibrated binary classifier (scores from a logistic
  model, labels drawn from them), degraded by labels that follow a weaker
  relationship (the concept drift of the demo, milder);
- regression: predictions with Gaussian errors, degraded by 20% more noise
  and a bias of 0.2 standard deviations.

    python bench/performance_alpha.py [--windows 2000] [--sizes 200 1000 5000]

Prints one table per task; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from driftstream.core import performance as perf


def classifier(n: int, rng: np.random.Generator, weaker: float = 0.0) -> tuple:
    x = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-(-1.5 + 1.5 * x)))
    truth = 1 / (1 + np.exp(-(-1.5 + (1.5 - weaker) * x)))
    label = np.where(rng.random(n) < truth, "1", "0").astype(object)
    prediction = np.where(score > 0.5, "1", "0").astype(object)
    return label, prediction, score


def regressor(n: int, rng: np.random.Generator, worse: bool = False) -> tuple:
    x = rng.normal(0, 1, n)
    noise = rng.normal(0.2 if worse else 0.0, 1.2 if worse else 1.0, n)
    return 3 * x + noise, 3 * x


def rates(task: str, windows: int, sizes: list[int], rows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    if task == perf.CLASSIFICATION:
        names = perf.CLASSIFICATION_METRICS
        label, prediction, score = classifier(rows, rng)
        ref = perf.reference(task, label, prediction, score, "1")
    else:
        names = perf.REGRESSION_METRICS
        label, prediction = regressor(rows, rng)
        ref = perf.reference(task, label, prediction, None, None)
    found: dict = {}
    for size in sizes:
        for drifted in (False, True):
            worse = dict.fromkeys(names, 0)
            for _ in range(windows):
                if task == perf.CLASSIFICATION:
                    lab, pred, sc = classifier(size, rng, 0.8 if drifted else 0.0)
                    values = perf.classification(lab, pred, sc, "1")
                else:
                    lab, pred = regressor(size, rng, drifted)
                    values = perf.regression(lab, pred)
                for name in names:
                    worse[name] += perf.judge(name, ref, values[name], size)[0]
            found[(size, drifted)] = {name: worse[name] / windows for name in names}
    return found


def show(task: str, found: dict, sizes: list[int], windows: int) -> None:
    names = list(next(iter(found.values())))
    print(f"\n{task}: share of {windows:,} windows judged worse (z={perf.DEFAULT_Z:g})")
    print(
        f"{'metric':<12}" + "".join(f"{f'n={s} no drift':>18}{f'n={s} drift':>14}" for s in sizes)
    )
    for name in names:
        cells = "".join(
            f"{found[(s, False)][name]:>18.4f}{found[(s, True)][name]:>14.3f}" for s in sizes
        )
        print(f"{name:<12}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000, help="windows per size (default 2000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--rows", type=int, default=20_000, help="baseline rows (default 20000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    summary = {}
    for task in perf.TASKS:
        found = rates(task, args.windows, args.sizes, args.rows, args.seed)
        show(task, found, args.sizes, args.windows)
        summary[task] = {
            "worst_false_alarm_rate": max(max(v.values()) for (s, d), v in found.items() if not d),
            "false_alarms": sum(
                round(r * args.windows) for (s, d), v in found.items() if not d for r in v.values()
            ),
            "judgements": args.windows * len(args.sizes) * len(next(iter(found.values()))),
        }
    bound = 3.0 / max(summary[t]["judgements"] for t in perf.TASKS)
    print(json.dumps({**summary, "rule_of_three_at_zero": bound if math.isfinite(bound) else None}))


if __name__ == "__main__":
    main()
