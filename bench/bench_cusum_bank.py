"""Many CUSUMs at once: ``update_cusums`` against ``update_many`` and ``update_page_hinkleys``.

Usage: python bench/bench_cusum_bank.py [--quick] [--repeat 9]

Shapes (detectors x values per detector in one micro-batch): 1,200 x 200,
12 x 5,000, 12 x 20,000 and 100 x 2,000. Every detector has the defaults
(CUSUM's own, Page-Hinkley's ``DEFAULT_PAGE_HINKLEY``) and starts warmed up
on 5,000 to 5,099 points (their counts differ, as for columns with missing
values). The values are what the monitor feeds its detectors: no-drift
values standardised through the baseline CDF (uniform on [-sqrt 3, sqrt 3]).
Each repeat feeds new columns (state carries over) three ways, in turn: a
loop of ``CUSUM.update_many``, ``update_cusums``, and ``update_page_hinkleys``
on Page-Hinkley detectors; each figure is the best of ``--repeat``. Every
repeat checks that ``update_cusums`` gave the loop's detections and states,
bit for bit; the script stops if not.

State: the JSON bytes (orjson, as the store writes them) of a CUSUM's running
state, ``to_state()`` without the parameters (shifts, threshold,
min_instances), which the monitor keeps in its settings, after 10,000 and
1,000,000 values.

Prints tables, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from functools import partial
from typing import Any

import numpy as np
import orjson

from bench_detectors import timed, update_each  # the same timing as the detector benchmark
from driftstream.core.detectors import CUSUM, PageHinkley, update_cusums, update_page_hinkleys
from driftstream.core.settings import DEFAULT_PAGE_HINKLEY

SHAPES = [(1200, 200), (12, 5000), (12, 20_000), (100, 2000)]
WARM_UP = 5000
SQRT3 = math.sqrt(3.0)
PARAMETERS = ("shifts", "threshold", "min_instances")


def standardised(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-SQRT3, SQRT3, n)


def measure(count: int, length: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng([count, length])
    looped, hinkleys = [], []
    for _ in range(count):
        cusum = CUSUM()
        cusum.update_many(standardised(rng, WARM_UP + int(rng.integers(100))))
        looped.append(cusum)
        hinkley = PageHinkley(**DEFAULT_PAGE_HINKLEY)  # type: ignore[arg-type]
        hinkley.update_many(standardised(rng, WARM_UP + int(rng.integers(100))))
        hinkleys.append(hinkley)
    banked = copy.deepcopy(looped)
    best = {"update_many": math.inf, "update_cusums": math.inf, "update_page_hinkleys": math.inf}
    detections = 0
    for _ in range(repeat):
        columns = [standardised(rng, length) for _ in range(count)]
        took, loop_hits = timed(partial(update_each, looped, columns))
        best["update_many"] = min(best["update_many"], took)
        took, bank_hits = timed(partial(update_cusums, banked, columns))
        best["update_cusums"] = min(best["update_cusums"], took)
        took, _ = timed(partial(update_page_hinkleys, hinkleys, columns))
        best["update_page_hinkleys"] = min(best["update_page_hinkleys"], took)
        same = all(a.tolist() == b.tolist() for a, b in zip(loop_hits, bank_hits, strict=True))
        if not same or [d.to_state() for d in looped] != [d.to_state() for d in banked]:
            raise SystemExit(f"update_cusums differs from update_many at {count} x {length}")
        detections += sum(h.size for h in loop_hits)
    values = count * length
    return {
        "detectors": count,
        "values": length,
        "detections": detections,
        **{f"{name}_values_per_s": round(values / s) for name, s in best.items()},
        **{f"{name}_ms": round(s * 1e3, 3) for name, s in best.items()},
        "cusums_vs_page_hinkleys": round(best["update_cusums"] / best["update_page_hinkleys"], 2),
        "cusums_vs_update_many": round(best["update_cusums"] / best["update_many"], 2),
    }


def running_state_bytes(n: int) -> int:
    """JSON bytes of a CUSUM's running state after ``n`` standardised no-drift values."""
    detector = CUSUM()
    detector.update_many(standardised(np.random.default_rng(n), n))
    state = detector.to_state()
    for key in PARAMETERS:
        del state[key]
    return len(orjson.dumps(state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--repeat", type=int, default=9, help="best of this many batches")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    print(
        f"{'shape':>12}{'hits':>6}{'update_many':>14}{'update_cusums':>15}"
        f"{'page_hinkleys':>15}{'cusums/PH':>11}{'cusums/many':>13}   (values/s; time ratios)"
    )
    results: dict[str, Any] = {"repeat": repeat, "shapes": {}}
    for count, length in SHAPES:
        row = measure(count, length, repeat)
        results["shapes"][f"{count}x{length}"] = row
        print(
            f"{count:>5} x{length:>6}{row['detections']:>6}"
            f"{row['update_many_values_per_s']:>14,}{row['update_cusums_values_per_s']:>15,}"
            f"{row['update_page_hinkleys_values_per_s']:>15,}"
            f"{row['cusums_vs_page_hinkleys']:>10}x{row['cusums_vs_update_many']:>12}x"
        )
    sizes = {f"after_{n}": running_state_bytes(n) for n in (10_000, 1_000_000)}
    results["running_state_bytes"] = sizes
    print("\nCUSUM running state (JSON bytes, without parameters):")
    for name, size in sizes.items():
        print(f"  {name.replace('_', ' ')} values: {size}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
