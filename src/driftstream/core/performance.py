"""Model performance on joined prediction/label pairs, and when a window is worse than training.

Metrics (pure numpy):

- classification: accuracy; with a ``positive`` class also precision,
  recall, F1 and the confusion counts; with scores (the probability of the
  positive class) ROC AUC (exact, ties counted half), log loss (scores
  clipped to [1e-15, 1 - 1e-15]), Brier score and expected calibration error
  (10 equal-width bins);
- regression: MAE, RMSE, mean error (prediction minus label: the bias) and R².

**The degradation rule.** A window of ``n`` pairs is *worse* than the
baseline when its metric is past the value expected for ``n`` pairs by more
than ``z`` standard errors plus an absolute ``tolerance``. Expected value and
standard error come from the baseline data itself (training or validation),
by bootstrap: ``rounds`` resamples of ``size`` rows give the metric's spread
``sd`` and bias at that size, and both scale with ``sqrt(size / n)`` (the
usual rate for these statistics; ECE and log loss of small samples are
biased, and the bias term keeps small windows from looking worse by
construction). So

    threshold = expected(n) -/+ (z * sd * sqrt(size / n) + tolerance)

with the sign pointing at "worse" (lower accuracy, higher log loss, a bias
away from the baseline's in either direction). ``DEFAULT_Z = 4.5`` is far
out in a normal tail (3e-6) on purpose: the rule's own inputs are estimates.
R² and ECE of a few hundred pairs are skewed towards "worse", and the
bootstrap spread is itself off by a few percent. Measured on no-drift windows
over 20 simulated baselines, z = 4 with 200 bootstrap rounds let R² and ECE
of 200-pair windows alarm up to 3 times per 1,000 windows; z = 4.5 with
``BOOTSTRAP_ROUNDS = 1000`` kept every metric at or below 0.7 per 1,000
(``bench/performance_alpha.py`` prints the rates). Below ``MIN_COUNT = 200``
pairs the normal approximation behind the rule is poor for rare classes, and
windows are not judged.

>>> labels = np.array(["1", "0", "1", "1"], dtype=object)
>>> predictions = np.array(["1", "0", "0", "1"], dtype=object)
>>> scores = np.array([0.9, 0.2, 0.4, 0.7])
>>> m = classification(labels, predictions, scores, "1")
>>> m["accuracy"], m["recall"], m["precision"], m["roc_auc"]
(0.75, 0.6666666666666666, 1.0, 1.0)
>>> regression(np.array([1.0, 2.0]), np.array([1.5, 1.5]))["mae"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
)
REGRESSION_METRICS = ("mae", "rmse", "mean_error", "r2")
# True: higher is better; False: lower is better; None: either way away from the baseline.
HIGHER_IS_BETTER: Mapping[str, bool | None] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
    "mae": False,
    "rmse": False,
    "mean_error": None,
    "r2": True,
}
MIN_COUNT = 200
DEFAULT_Z = 4.5
DEFAULT_TOLERANCE = (
    0.0  # sampling error is allowed for by z; raise it per metric to ignore small moves
)
BOOTSTRAP_SIZE = 1000
BOOTSTRAP_ROUNDS = 1000
ECE_BINS = 10
_CLIP = 1e-15


# -- metrics ----------------------------------------------------------------------


def classification(
    labels: np.ndarray,
    predictions: np.ndarray,
    scores: npt.NDArray[np.float64] | None,
    positive: str | None,
) -> dict[str, float]:
    """Every classification metric (NaN where it cannot be computed), confusion counts, count."""
    _same_length(labels, predictions, scores)
    count = len(labels)
    out = dict.fromkeys(CLASSIFICATION_METRICS, math.nan)
    out["count"] = float(count)
    if not count:
        return out
    out["accuracy"] = float(np.mean(labels == predictions))
    if positive is None:
        return out
    truth = labels == positive
    said = predictions == positive
    tp, fp = int(np.sum(truth & said)), int(np.sum(~truth & said))
    fn, tn = int(np.sum(truth & ~said)), int(np.sum(~truth & ~said))
    out.update(tp=float(tp), fp=float(fp), fn=float(fn), tn=float(tn))
    out["precision"] = _ratio(tp, tp + fp)
    out["recall"] = _ratio(tp, tp + fn)
    out["f1"] = _ratio(2 * tp, 2 * tp + fp + fn)
    if scores is not None:
        out.update(_score_metrics(truth, np.asarray(scores, dtype=np.float64)))
    return out


def _score_metrics(
    truth: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]
) -> dict[str, float]:
    known = np.isfinite(scores)
    y, p = truth[known].astype(np.float64), scores[known]
    if not len(y):
        return {}
    clipped = np.clip(p, _CLIP, 1 - _CLIP)
    return {
        "roc_auc": roc_auc(y, p),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
    }


def roc_auc(y: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> float:
    """Exact ROC AUC by ranks (Mann-Whitney U), ties counted half; NaN with one class."""
    positives = int(np.sum(y))
    negatives = len(y) - positives
    if not positives or not negatives:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over runs of equal scores.
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    ends = np.concatenate((starts[1:], [len(ranked)]))
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    u = float(np.sum(ranks[y == 1])) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def expected_calibration_error(y: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> float:
    """Weighted mean |observed rate - mean score| over 10 equal-width score bins."""
    bins = np.clip((p * ECE_BINS).astype(np.int64), 0, ECE_BINS - 1)
    counts = np.bincount(bins, minlength=ECE_BINS)
    observed = np.bincount(bins, weights=y, minlength=ECE_BINS)
    predicted = np.bincount(bins, weights=p, minlength=ECE_BINS)
    used = counts > 0
    gaps = np.abs(observed[used] - predicted[used])
    return float(np.sum(gaps) / len(y))


def regression(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, mean error (prediction - label), R² and count; NaN when empty."""
    _same_length(labels, predictions, None)
    y = np.asarray(labels, dtype=np.float64)
    error = np.asarray(predictions, dtype=np.float64) - y
    count = len(y)
    if not count:
        return {**dict.fromkeys(REGRESSION_METRICS, math.nan), "count": 0.0}
    spread = float(np.sum((y - y.mean()) ** 2))
    squared = float(np.sum(error**2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": math.sqrt(squared / count),
        "mean_error": float(np.mean(error)),
        "r2": 1.0 - squared / spread if spread > 0 else math.nan,
        "count": float(count),
    }


def metrics(
    task: str,
    labels: np.ndarray,
    predictions: np.ndarray,
    scores: npt.NDArray[np.float64] | None,
    positive: str | None,
) -> dict[str, float]:
    if task == REGRESSION:
        return regression(labels, predictions)
    return classification(labels, predictions, scores, positive)


# -- the rule ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A metric's baseline value, and its bias and spread over samples of ``size`` pairs."""

    task: str
    size: int
    values: Mapping[str, float]
    bias: Mapping[str, float]
    spread: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "size": self.size,
            "metrics": {
                name: {
                    "value": _out(self.values[name]),
                    "bias": _out(self.bias[name]),
                    "spread": _out(self.spread[name]),
                }
                for name in self.values
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "performance.reference") -> Reference:
        if not isinstance(data, Mapping) or set(data) != {"task", "size", "metrics"}:
            msg = f"{where}: expected an object with task, size and metrics"
            raise ValueError(msg)
        task, size, found = data["task"], data["size"], data["metrics"]
        if task not in TASKS:
            msg = f"{where}.task: expected one of {list(TASKS)}, got {task!r}"
            raise ValueError(msg)
        if type(size) is not int or size < 1:
            msg = f"{where}.size: expected a positive integer, got {size!r}"
            raise ValueError(msg)
        names = REGRESSION_METRICS if task == REGRESSION else CLASSIFICATION_METRICS
        if not isinstance(found, Mapping) or set(found) != set(names):
            msg = f"{where}.metrics: expected exactly {list(names)}"
            raise ValueError(msg)
        values, bias, spread = {}, {}, {}
        for name in names:
            entry = found[name]
            if not isinstance(entry, Mapping) or set(entry) != {"value", "bias", "spread"}:
                msg = f"{where}.metrics.{name}: expected value, bias and spread"
                raise ValueError(msg)
            values[name] = _in(entry["value"], f"{where}.metrics.{name}.value")
            bias[name] = _in(entry["bias"], f"{where}.metrics.{name}.bias")
            spread[name] = _in(entry["spread"], f"{where}.metrics.{name}.spread")
        return cls(task, size, values, bias, spread)


def reference(
    task: str,
    labels: np.ndarray,
    predictions: np.ndarray,
    scores: npt.NDArray[np.float64] | None,
    positive: str | None,
    *,
    size: int = BOOTSTRAP_SIZE,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> Reference:
    """The baseline's metrics with their bootstrap bias and spread at ``size`` pairs."""
    if task not in TASKS:
        msg = f"task must be one of {list(TASKS)}, got {task!r}"
        raise ValueError(msg)
    names = REGRESSION_METRICS if task == REGRESSION else CLASSIFICATION_METRICS
    whole = metrics(task, labels, predictions, scores, positive)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    count = len(labels)
    for _ in range(rounds if count else 0):
        rows = rng.integers(0, count, size)
        found = metrics(
            task,
            labels[rows],
            predictions[rows],
            None if scores is None else scores[rows],
            positive,
        )
        for name in names:
            samples[name].append(found[name])
    values, bias, spread = {}, {}, {}
    for name in names:
        drawn = np.array(samples[name], dtype=np.float64)
        drawn = drawn[np.isfinite(drawn)]
        values[name] = float(whole[name])
        ok = len(drawn) > 1 and math.isfinite(values[name])
        bias[name] = float(np.mean(drawn) - values[name]) if ok else math.nan
        spread[name] = float(np.std(drawn, ddof=1)) if ok else math.nan
    return Reference(task, size, values, bias, spread)


def reference_value(ref: Reference, metric: str) -> float:
    return float(ref.values.get(metric, math.nan))


def judge(
    metric: str,
    ref: Reference,
    value: float,
    count: int,
    *,
    z: float = DEFAULT_Z,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[bool, float]:
    """Whether a window's ``value`` over ``count`` pairs is worse than the baseline; the threshold.

    NaN values, and metrics the baseline could not measure, are never worse.
    """
    base = ref.values.get(metric, math.nan)
    spread, bias = ref.spread.get(metric, math.nan), ref.bias.get(metric, math.nan)
    if count < 1 or not all(math.isfinite(v) for v in (base, spread, bias)):
        return False, math.nan
    scale = math.sqrt(ref.size / count)
    expected = base + bias * scale
    margin = z * spread * scale + tolerance
    direction = HIGHER_IS_BETTER[metric]
    if direction is None:
        threshold = expected + margin if value >= expected else expected - margin
        return bool(abs(value - expected) > margin), threshold
    if direction:
        threshold = expected - margin
        return bool(value < threshold), threshold
    threshold = expected + margin
    return bool(value > threshold), threshold


def compare(
    metric: str,
    ref: Reference,
    champion: tuple[float, int],
    challenger: tuple[float, int],
    *,
    z: float = DEFAULT_Z,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[bool, float]:
    """Whether a challenger's (value, pairs) is worse than its champion's; the threshold.

    Both are samples, so the margin adds their sampling errors: the
    baseline's spread at ``ref.size`` pairs, scaled to each side's count.
    Their biases at similar counts cancel, so none is applied.
    """
    (base, n_base), (value, count) = champion, challenger
    spread = ref.spread.get(metric, math.nan)
    known = all(math.isfinite(v) for v in (base, value, spread))
    if min(n_base, count) < 1 or not known:
        return False, math.nan
    margin = z * spread * math.sqrt(ref.size / n_base + ref.size / count) + tolerance
    direction = HIGHER_IS_BETTER[metric]
    if direction is None:
        threshold = base + margin if value >= base else base - margin
        return bool(abs(value - base) > margin), threshold
    if direction:
        return bool(value < base - margin), base - margin
    return bool(value > base + margin), base + margin


def _ratio(top: int, bottom: int) -> float:
    return top / bottom if bottom else math.nan


def _same_length(labels: np.ndarray, predictions: np.ndarray, scores: Any) -> None:
    lengths = {len(labels), len(predictions)} | ({len(scores)} if scores is not None else set())
    if len(lengths) != 1:
        msg = f"labels, predictions and scores must have one length, got {sorted(lengths)}"
        raise ValueError(msg)


def _out(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _in(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{where}: expected a finite number or null, got {value!r}"
        raise ValueError(msg)
    return float(value)
