"""Synthetic traffic for a small fraud model: examples, tests and the demo.

The columns mix what real feature sets have: a heavy-tailed amount in
dollars, a latency in milliseconds, integers with missing values, a few
categoricals and a boolean. ``drift`` shifts a chosen subset so tests and the
demo know exactly which features should alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.settings import PREDICTION, SCORE

MODEL_ID = "fraud-detector"
NUMERIC_FEATURES = ("amount", "latency_ms", "customer_age", "items")
CATEGORICAL_FEATURES = ("country", "device", "is_new_customer")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "CA")
COUNTRY_WEIGHTS = (0.4, 0.12, 0.1, 0.1, 0.08, 0.1, 0.05, 0.05)
DEVICES = ("ios", "android", "web")


def frame(
    n: int, seed: int, drift: Iterable[str] = (), concept: bool = False
) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.object_]]:
    """``n`` rows of features, score, prediction and label.

    Features named in ``drift`` come from a shifted distribution: ``amount``
    and ``latency_ms`` move up, ``customer_age`` moves down, ``country``
    gains a new market and ``device`` tilts to web. With ``concept`` the
    labels follow a new relationship to the same features (fraud moved to
    returning customers and small amounts) while the model's score does not
    change: a concept drift that no input statistic can see.
    """
    rng = np.random.default_rng(seed)
    shifted = set(drift)
    unknown = shifted - set(NUMERIC_FEATURES) - set(CATEGORICAL_FEATURES)
    if unknown:
        msg = f"cannot drift unknown features: {sorted(unknown)}"
        raise ValueError(msg)
    amount = rng.lognormal(mean=4.0 + 0.6 * ("amount" in shifted), sigma=0.8, size=n)
    latency = rng.gamma(shape=4.0, scale=30.0 * (1.5 if "latency_ms" in shifted else 1.0), size=n)
    age = np.round(rng.normal(42 - 9 * ("customer_age" in shifted), 12, size=n).clip(18, 95))
    age[rng.random(n) < 0.03] = np.nan
    items = rng.poisson(3.0, size=n).astype(np.float64)
    country = _choice(rng, n, shifted, "country")
    device_p = (0.2, 0.2, 0.6) if "device" in shifted else (0.45, 0.35, 0.2)
    device = rng.choice(np.array(DEVICES, dtype=object), size=n, p=device_p)
    new_customer = np.where(rng.random(n) < 0.25, "true", "false").astype(object)
    logit = -4.0 + 0.01 * (amount - 60) + 0.004 * latency + 1.2 * (new_customer == "true")
    score = 1.0 / (1.0 + np.exp(-logit))
    truth = score
    if concept:
        new_logit = -1.6 - 0.01 * (amount - 60) - 1.2 * (new_customer == "true")
        truth = 1.0 / (1.0 + np.exp(-new_logit))
    label = np.where(rng.random(n) < truth, "fraud", "ok").astype(object)
    return {
        "amount": np.round(amount, 2),
        "latency_ms": np.round(latency, 1),
        "customer_age": age,
        "items": items,
        "country": country,
        "device": device,
        "is_new_customer": new_customer,
        "score": np.round(score, 4),
        "prediction": np.where(score > 0.5, "fraud", "ok").astype(object),
        "label": label,
    }


def _choice(rng: np.random.Generator, n: int, shifted: set[str], name: str) -> np.ndarray:
    countries = np.array(COUNTRIES, dtype=object)
    values = rng.choice(countries, size=n, p=COUNTRY_WEIGHTS)
    if name in shifted:
        # A launch in a new market: a category the baseline never saw.
        values[rng.random(n) < 0.3] = "MX"
    values[rng.random(n) < 0.02] = None
    return values


def feature_rows(
    data: dict[str, np.ndarray],
    names: Sequence[str] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES),
) -> list[dict[str, Any]]:
    """Each row's ``names`` as the ``features`` object of an event; NaN becomes null."""
    columns = [data[name].tolist() for name in names]
    return [
        {name: None if value != value else value for name, value in zip(names, row, strict=True)}
        for row in zip(*columns, strict=True)
    ]


def monitor_columns(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A frame's columns as a monitor batch takes them (outputs as pseudo-features)."""
    columns = {name: data[name] for name in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)}
    columns[PREDICTION] = data["prediction"]
    columns[SCORE] = data["score"]
    return columns


REFERENCE_MODEL_ID = "reference-model"
REFERENCE_NUMERIC = tuple(f"n{i}" for i in range(10))
REFERENCE_CATEGORICAL = ("region", "plan")


def reference_numeric(numeric: int = 10) -> tuple[str, ...]:
    """The names of ``reference_frame``'s numeric columns: ``n0``, ``n1``, ..."""
    return tuple(f"n{i}" for i in range(numeric))


def reference_frame(n: int, seed: int, numeric: int = 10) -> dict[str, np.ndarray]:
    """The benchmark workload: ``numeric`` (10) numeric and 2 categorical features, a score.

    ``numeric`` sets how many numeric columns there are (``n0``, ``n1``, ...;
    column ``n{i}`` is normal with mean ``10 i`` and standard deviation
    ``1 + i``). Columns ``n0`` to ``n9``, the categoricals and the score do
    not depend on it: columns past ``n9`` are drawn after the others, and
    fewer than ten keeps the first ones.
    """
    if numeric < 0:
        msg = f"numeric must be at least 0, got {numeric}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    drawn: dict[str, np.ndarray] = {}
    for i, name in enumerate(REFERENCE_NUMERIC):
        drawn[name] = _reference_column(rng, i, n)
    drawn["region"] = rng.choice(np.array([f"r{i}" for i in range(12)], dtype=object), size=n)
    drawn["plan"] = rng.choice(
        np.array(["free", "pro", "team", "enterprise"], dtype=object),
        size=n,
        p=(0.6, 0.25, 0.1, 0.05),
    )
    score = np.round(rng.beta(2.0, 5.0, size=n), 4)
    for i in range(len(REFERENCE_NUMERIC), numeric):
        drawn[f"n{i}"] = _reference_column(rng, i, n)
    data = {name: drawn[name] for name in (*reference_numeric(numeric), *REFERENCE_CATEGORICAL)}
    data["score"] = score
    data["prediction"] = np.where(score > 0.5, "yes", "no").astype(object)
    return data


def _reference_column(rng: np.random.Generator, i: int, n: int) -> np.ndarray:
    return np.round(rng.normal(loc=10.0 * i, scale=1.0 + i, size=n), 3)
