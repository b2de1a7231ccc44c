"""Distances and tests between two count vectors on the same bins.

Every function takes the baseline (``expected``/``p``) and the window
(``actual``/``q``) as counts or proportions over the same bins, normalises
each to proportions, and returns a python float. If either side has a zero
total there is nothing to compare, and the result is nan, without a warning.

:data:`STATISTICS` records, for each statistic, which feature kinds it suits,
its default alert thresholds and where those defaults come from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_EPSILON = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 100_000


def _as_counts(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"{name} must be a 1-d count vector, got shape {array.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        msg = f"{name} must hold finite, non-negative counts"
        raise ValueError(msg)
    return array


def _pair(
    expected: npt.ArrayLike, actual: npt.ArrayLike, names: tuple[str, str] = ("expected", "actual")
) -> tuple[FloatArray, FloatArray] | None:
    """Both vectors as proportions, or None when either total is zero."""
    left, right = _as_counts(expected, names[0]), _as_counts(actual, names[1])
    if left.shape != right.shape:
        msg = f"{names[0]} and {names[1]} differ in length: {left.size} != {right.size}"
        raise ValueError(msg)
    left_total, right_total = left.sum(), right.sum()
    if left_total <= 0 or right_total <= 0:
        return None
    return left / left_total, right / right_total


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, eps: float = 1e-4) -> float:
    """Population Stability Index, ``sum((a - e) * ln(a / e))`` over proportions.

    A bin that is empty on one side would make the log infinite, and live
    windows routinely leave bins empty, so both proportions are floored at
    ``eps`` first (without renormalising, the usual practice).

    >>> round(psi([50, 50], [40, 60]), 4)
    0.0405
    """
    if not eps > 0:
        msg = f"eps must be > 0, got {eps!r}"
        raise ValueError(msg)
    pair = _pair(expected, actual)
    if pair is None:
        return math.nan
    base, live = np.maximum(pair[0], eps), np.maximum(pair[1], eps)
    return float(np.sum((live - base) * np.log(live / base)))


def _kl_to_mixture(p: FloatArray, mixture: FloatArray) -> float:
    # 0 * log(0) is 0; where p > 0 the mixture is > 0 too
    support = p > 0
    return float(np.sum(p[support] * np.log2(p[support] / mixture[support])))


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance in base 2: the square root of the divergence, in [0, 1].

    >>> js_distance([1, 0], [0, 1])
    1.0
    >>> js_distance([3, 1], [6, 2])
    0.0
    """
    pair = _pair(p, q, ("p", "q"))
    if pair is None:
        return math.nan
    left, right = pair
    mixture = 0.5 * (left + right)
    divergence = 0.5 * (_kl_to_mixture(left, mixture) + _kl_to_mixture(right, mixture))
    # rounding can leave a hair below 0 or above 1
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def _cdf_gap(left: FloatArray, right: FloatArray) -> FloatArray:
    return np.abs(np.cumsum(left) - np.cumsum(right))


def ks_binned(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic on the binned CDFs: ``max |F_p - F_q|``.

    Binning can only hide differences inside a bin, so this is at most the
    KS statistic of the raw samples.

    >>> ks_binned([1, 1, 0, 0], [0, 1, 1, 0])
    0.5
    """
    pair = _pair(p, q, ("p", "q"))
    if pair is None:
        return math.nan
    return min(float(np.max(_cdf_gap(*pair))), 1.0)


def _scale_or_one(scale: float | None) -> float:
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return 1.0
    return float(scale)


def wasserstein_binned(
    p: npt.ArrayLike, q: npt.ArrayLike, points: npt.ArrayLike, scale: float | None = None
) -> float:
    """Earth mover's distance between two histograms, divided by ``scale``.

    Each bin's mass is put at its representative point (the caller passes
    inner bin midpoints, and baseline min / max for the open outer bins), and
    the 1-D distance is ``sum |F_p - F_q| * gap`` between consecutive points.
    That is exact for those point masses. For the raw samples, each value
    moves at most half a bin width to its midpoint, so the error is at most
    the widest inner bin plus whatever mass the outer bins carry beyond the
    baseline range. ``scale`` is the baseline std; when it is missing, not
    finite or <= 0 the distance is left unscaled. Points need not be sorted.

    >>> wasserstein_binned([1, 0, 0], [0, 0, 1], points=[0.0, 1.0, 2.0], scale=4.0)
    0.5
    """
    pair = _pair(p, q, ("p", "q"))
    where = np.asarray(points, dtype=np.float64)
    if where.shape != np.shape(p) or not np.all(np.isfinite(where)):
        msg = f"points must be {np.size(p)} finite values, one per bin, got {where.tolist()!r}"
        raise ValueError(msg)
    if pair is None:
        return math.nan
    order = np.argsort(where, kind="stable")
    gaps = np.diff(where[order])
    left, right = pair[0][order], pair[1][order]
    distance = float(np.dot(_cdf_gap(left, right)[:-1], gaps))
    return distance / _scale_or_one(scale)


def linf(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """L-infinity distance between the two proportion vectors.

    >>> linf([2, 2], [1, 3])
    0.25
    """
    pair = _pair(p, q, ("p", "q"))
    if pair is None:
        return math.nan
    return float(np.max(np.abs(pair[0] - pair[1])))


def chi2_pvalue(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Chi-square homogeneity p-value: do both count vectors come from one distribution?

    A two-sample test on the 2 x K table of both vectors' counts. The
    reference (a baseline, or the previous window) is a sample too: treating
    its shares as exact, as a goodness-of-fit test does, understates the
    noise and raised false alarms at several times the nominal rate with a
    20,000-row baseline and 5,000-event windows (``bench/chi2_alpha.py``
    measures both). A category only one side has simply counts as evidence;
    no expected count is zero, since every column total is positive.

    Bins empty on both sides are dropped; the degrees of freedom are the bins
    left minus one (with fewer than two bins there is nothing to test, so 1.0).

    >>> chi2_pvalue([50, 50], [50, 50])
    1.0
    >>> chi2_pvalue([50, 50], [90, 10]) < 1e-8
    True
    """
    base, live = _as_counts(expected, "expected"), _as_counts(actual, "actual")
    if base.shape != live.shape:
        msg = f"expected and actual differ in length: {base.size} != {live.size}"
        raise ValueError(msg)
    used = (base > 0) | (live > 0)
    base, live = base[used], live[used]
    base_total, live_total = base.sum(), live.sum()
    if base_total <= 0 or live_total <= 0:
        return math.nan
    if base.size < 2:
        return 1.0
    column = base + live
    total = base_total + live_total
    statistic = 0.0
    for observed, row_total in ((base, base_total), (live, live_total)):
        predicted = column * (row_total / total)
        statistic += float(np.sum((observed - predicted) ** 2 / predicted))
    return chi2_sf(statistic, base.size - 1)


def chi2_sf(x: float, df: float) -> float:
    """Chi-square survival function ``P(X > x)``, i.e. ``Q(df / 2, x / 2)``.

    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    if not df > 0:
        msg = f"df must be > 0, got {df!r}"
        raise ValueError(msg)
    if math.isnan(x):
        return math.nan
    return gamma_q(0.5 * df, 0.5 * x)


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma function ``Q(a, x) = Γ(a, x) / Γ(a)``.

    Following Press et al., *Numerical Recipes* (3rd ed., 2007), §6.2: the
    series for ``P = 1 - Q`` converges fast when ``x < a + 1``, the continued
    fraction for ``Q`` (evaluated with the modified Lentz method) otherwise.

    >>> round(gamma_q(1.0, 2.0), 12) == round(math.exp(-2.0), 12)
    True
    """
    if not a > 0:
        msg = f"a must be > 0, got {a!r}"
        raise ValueError(msg)
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    # Γ(a)⁻¹ e^{-x} x^a in log space: each factor alone overflows for large a
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        return max(0.0, 1.0 - _gamma_series(a, x) * math.exp(log_prefix))
    return _gamma_fraction(a, x) * math.exp(log_prefix)


def _gamma_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPSILON:
            return total
    msg = f"incomplete gamma series did not converge for a={a!r}, x={x!r}"
    raise ArithmeticError(msg)


def _gamma_fraction(a: float, x: float) -> float:
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    fraction = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = d if abs(d) >= _TINY else _TINY
        c = b + an / c
        c = c if abs(c) >= _TINY else _TINY
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < _EPSILON:
            return fraction
    msg = f"incomplete gamma continued fraction did not converge for a={a!r}, x={x!r}"
    raise ArithmeticError(msg)


@dataclass(frozen=True)
class Statistic:
    """What a statistic suits and when it alerts.

    ``threshold`` starts an alert and ``critical`` raises its severity. For a
    p-value (``higher_is_drift`` False) drift is a value *below* them.
    """

    name: str
    kinds: frozenset[str]
    threshold: float
    critical: float
    higher_is_drift: bool
    source: str


NUMERIC = "numeric"
CATEGORICAL = "categorical"
_BOTH = frozenset({NUMERIC, CATEGORICAL})

STATISTICS: Mapping[str, Statistic] = MappingProxyType(
    {
        "psi": Statistic(
            "psi",
            _BOTH,
            0.1,
            0.25,
            True,
            "Credit-scoring rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, "
            ">= 0.25 major shift (Siddiqi, 'Credit Risk Scorecards', 2006)",
        ),
        "js": Statistic(
            "js",
            _BOTH,
            0.1,
            0.2,
            True,
            "0.1 follows Evidently's default threshold for its Jensen-Shannon test on large "
            "reference data (its log base may differ); critical 0.2 is a driftstream default",
        ),
        "ks": Statistic(
            "ks",
            frozenset({NUMERIC}),
            0.1,
            0.2,
            True,
            "driftstream default: a 0.1 gap between binned CDFs; with the large windows of "
            "a stream the KS p-value flags shifts too small to matter",
        ),
        "wasserstein": Statistic(
            "wasserstein",
            frozenset({NUMERIC}),
            0.1,
            0.25,
            True,
            "Evidently's default for its normed Wasserstein distance: 0.1 baseline "
            "standard deviations",
        ),
        "chi2": Statistic(
            "chi2",
            frozenset({CATEGORICAL}),
            0.001,
            1e-6,
            False,
            "driftstream default: a strict alpha, because with large windows the "
            "chi-square test rejects for differences of no practical size",
        ),
        "linf": Statistic(
            "linf",
            frozenset({CATEGORICAL}),
            0.3,
            0.5,
            True,
            "Google Vertex AI Model Monitoring's default L-infinity threshold of 0.3 "
            "for categorical features",
        ),
    }
)
"""Default statistics by name.

- ``psi`` 0.1 / 0.25: Siddiqi, *Credit Risk Scorecards* (2006).
- ``js`` 0.1 / 0.2: 0.1 as in Evidently's Jensen-Shannon default.
- ``ks`` 0.1 / 0.2: driftstream defaults on the binned CDF gap.
- ``wasserstein`` 0.1 / 0.25 baseline stds: Evidently's normed default is 0.1.
- ``chi2`` p-value 0.001 / 1e-6: strict because large windows make it very sensitive.
- ``linf`` 0.3 / 0.5: 0.3 is Vertex AI Model Monitoring's categorical default.

Numeric features use psi, js, ks and wasserstein; categorical ones use chi2,
js, linf and psi.
"""

_PAIRWISE: Mapping[str, Callable[[npt.ArrayLike, npt.ArrayLike], float]] = MappingProxyType(
    {"psi": psi, "js": js_distance, "ks": ks_binned, "chi2": chi2_pvalue, "linf": linf}
)


def compute(
    name: str,
    expected: npt.ArrayLike,
    actual: npt.ArrayLike,
    *,
    points: npt.ArrayLike | None = None,
    scale: float | None = None,
) -> float:
    """Compute the statistic called ``name``; wasserstein needs ``points``.

    >>> compute("linf", [2, 2], [1, 3])
    0.25
    """
    if name == "wasserstein":
        if points is None:
            msg = "statistic 'wasserstein' needs points"
            raise ValueError(msg)
        return wasserstein_binned(expected, actual, points, scale)
    if name not in _PAIRWISE:
        msg = f"unknown statistic {name!r}; known: {sorted(STATISTICS)}"
        raise ValueError(msg)
    return _PAIRWISE[name](expected, actual)


def beyond(value: float, threshold: float, higher_is_drift: bool) -> bool:
    """Whether ``value`` is at or beyond ``threshold`` in the drift direction.

    A distance crosses at ``value >= threshold``; a p-value crosses at
    ``value < threshold`` (reject at level alpha). nan never crosses.

    >>> beyond(0.1, 0.1, True), beyond(0.001, 0.001, False), beyond(math.nan, 0.1, True)
    (True, False, False)
    """
    if math.isnan(value):
        return False
    return value >= threshold if higher_is_drift else value < threshold


def crossed(stat: Statistic, value: float, threshold: float) -> bool:
    """:func:`beyond` in the direction of ``stat``.

    >>> crossed(STATISTICS["psi"], 0.1, 0.1), crossed(STATISTICS["chi2"], 0.001, 0.001)
    (True, False)
    """
    return beyond(value, threshold, stat.higher_is_drift)


def severity(
    stat: Statistic, value: float, threshold: float | None = None, critical: float | None = None
) -> str:
    """``"critical"`` past ``critical``, ``"warning"`` past ``threshold``, else ``"ok"``.

    Thresholds default to the statistic's documented defaults.

    >>> [severity(STATISTICS["psi"], v) for v in (0.05, 0.2, 0.3, math.nan)]
    ['ok', 'warning', 'critical', 'ok']
    >>> severity(STATISTICS["psi"], 0.2, threshold=0.1, critical=0.15)
    'critical'
    """
    if crossed(stat, value, stat.critical if critical is None else critical):
        return "critical"
    if crossed(stat, value, stat.threshold if threshold is None else threshold):
        return "warning"
    return "ok"
