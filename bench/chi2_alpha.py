"""False-alarm rate and power of the chi-square drift test, old and new.

    .venv/bin/python bench/chi2_alpha.py [--windows 20000] [--seed 1]

Each trial draws a fresh 20,000-row baseline and a 5,000-event window from
the same 8-category distribution (the demo's ``country`` shares), so the
baseline is a sample too, as in production. The share of trials whose
p-value falls below alpha is the false-alarm rate per window; it should be
alpha. Power is the same with one category's share moved up 2 points in
the window. "goodness of fit" is the test driftstream used before: the
window against the baseline's shares taken as exact. "homogeneity" is
``driftstream.core.stats.chi2_pvalue``.
"""

from __future__ import annotations

import argparse

import numpy as np

from driftstream.core.stats import chi2_pvalue, chi2_sf

SHARES = np.array([0.40, 0.15, 0.12, 0.10, 0.08, 0.07, 0.05, 0.03])
BASELINE_ROWS = 20_000
WINDOW = 5_000
ALPHAS = (0.001, 0.01, 0.05)


def goodness_of_fit(base: np.ndarray, live: np.ndarray) -> float:
    used = (base > 0) | (live > 0)
    base, live = base[used].astype(float), live[used].astype(float)
    shares = np.maximum(base / base.sum(), 1e-4)
    predicted = shares / shares.sum() * live.sum()
    return chi2_sf(float(np.sum((live - predicted) ** 2 / predicted)), base.size - 1)


def pvalues(rng: np.random.Generator, windows: int, window_shares: np.ndarray) -> dict:
    bases = rng.multinomial(BASELINE_ROWS, SHARES, size=windows)
    lives = rng.multinomial(WINDOW, window_shares, size=windows)
    pairs = list(zip(bases, lives, strict=True))
    return {
        "goodness of fit": np.array([goodness_of_fit(b, w) for b, w in pairs]),
        "homogeneity": np.array([chi2_pvalue(b, w) for b, w in pairs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    shifted = SHARES.copy()
    shifted[3] += 0.02
    shifted /= shifted.sum()
    null = pvalues(rng, args.windows, SHARES)
    drift = pvalues(rng, args.windows, shifted)
    print(
        f"{args.windows:,} no-drift windows of {WINDOW:,} events, each against a fresh "
        f"{BASELINE_ROWS:,}-row baseline; power: one share +2 points"
    )
    print("| test | alpha | false alarms | ratio to alpha | power |")
    print("|---|---|---|---|---|")
    for name in null:
        for alpha in ALPHAS:
            rate = float(np.mean(null[name] < alpha))
            power = float(np.mean(drift[name] < alpha))
            print(f"| {name} | {alpha} | {rate:.4f} | {rate / alpha:.2f} | {power:.3f} |")


if __name__ == "__main__":
    main()
