"""Baseline profiles: what a model's training data looked like.

A profile is built once from the training data and then shipped as a small,
versioned JSON document. Live sketches reuse its bin edges and category lists,
so a drift statistic always compares like with like.

* Numeric columns get quantile bin edges (roughly equal mass per bin on
  continuous data), bin counts, moments and the range.
* Categorical columns keep the ``top_k`` most frequent categories; everything
  else is lumped into one "other" count.

Training data may hold ``None``, NaN and ±inf. All of them count as *nulls*:
a profile describes the finite values, and the live quality checks (not the
baseline) are what flag non-finite inputs.

>>> import numpy as np
>>> columns = {
...     "age": np.array([20.0, 30.0, 40.0, np.nan]),
...     "plan": np.array(["basic", "pro", "basic", None], dtype=object),
... }
>>> profile = build_profile(columns, model_id="churn", bins=2)
>>> age = profile.features["age"]
>>> age.edges, age.counts, age.null_rate
((30.0,), (1, 2), 0.25)
>>> plan = profile.features["plan"]
>>> plan.categories, plan.counts, plan.other_count
(('basic', 'pro'), (2, 1), 0)
>>> BaselineProfile.from_json(profile.to_json()) == profile
True
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core import performance as perf
from driftstream.core.binning import bin_counts, validate_edges

SCHEMA_VERSION = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Beyond 2**53 a float no longer names one integer, so it keeps its float form.
_EXACT_INT_LIMIT = 2.0**53


class BaselineError(ValueError):
    """A baseline profile, training file or training column is unusable."""


@dataclass(frozen=True, kw_only=True)
class NumericProfile:
    """Summary of one numeric column.

    ``edges`` are the inner bin edges (see :mod:`driftstream.core.binning`), so
    ``counts`` has ``len(edges) + 1`` entries. ``count`` is the number of
    finite values; ``std`` is the population standard deviation.
    """

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    null_count: int
    mean: float
    std: float
    min: float
    max: float

    @property
    def null_rate(self) -> float:
        return _rate(self.null_count, self.count)

    def points(self) -> FloatArray:
        """One representative value per bin, sorted, for Wasserstein distances.

        The open outer bins have no midpoint. They stand half an inner bin
        width beyond their edge (clipped to the observed ``min`` / ``max``):
        placing them at the extremes would let a heavy tail's far maximum
        turn ordinary noise in the outer bins into a large distance.
        """
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.size < 2:
            return np.array([self.min, self.max])
        middles = (edges[:-1] + edges[1:]) / 2
        low = max(self.min, edges[0] - (edges[1] - edges[0]) / 2)
        high = min(self.max, edges[-1] + (edges[-1] - edges[-2]) / 2)
        return np.concatenate(([low], middles, [high]))

    def cdf(self, values: FloatArray) -> FloatArray:
        """The baseline's distribution function at ``values``, in [0, 1].

        Piecewise linear through ``(min, 0)``, each edge at the share of
        training values below it, and ``(max, 1)``. Under no drift the
        result is close to uniform whatever the feature's scale or shape,
        which is what the sequential detectors need.
        """
        edges = np.asarray(self.edges, dtype=np.float64)
        below = np.cumsum(self.counts)[:-1] / max(self.count, 1)
        xs = np.concatenate(([min(self.min, edges[0])], edges, [max(self.max, edges[-1])]))
        ys = np.concatenate(([0.0], below, [1.0]))
        return np.interp(values, xs, ys)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": NUMERIC,
            "count": self.count,
            "null_count": self.null_count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "edges": list(self.edges),
            "counts": list(self.counts),
        }


@dataclass(frozen=True, kw_only=True)
class CategoricalProfile:
    """Summary of one categorical column.

    ``categories`` are the most frequent values (ties broken by name), with
    ``counts`` aligned to them; ``other_count`` covers every other non-null
    value and ``count`` all non-null values.
    """

    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other_count: int
    null_count: int
    count: int

    @property
    def null_rate(self) -> float:
        return _rate(self.null_count, self.count)

    def vector(self) -> IntArray:
        """Counts per category followed by the other count."""
        return np.array((*self.counts, self.other_count), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": CATEGORICAL,
            "count": self.count,
            "null_count": self.null_count,
            "categories": list(self.categories),
            "counts": list(self.counts),
            "other_count": self.other_count,
        }


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class BaselinePerformance:
    """The model's performance on the baseline data, for judging windows of joined labels."""

    task: str  # classification or regression
    positive: str | None  # the positive class (binary metrics), None for multi-class
    reference: perf.Reference

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "positive": self.positive, "reference": self.reference.to_dict()}

    @classmethod
    def from_dict(cls, raw: object) -> BaselinePerformance:
        where = "performance"
        if not isinstance(raw, Mapping) or set(raw) != {"task", "positive", "reference"}:
            msg = f"{where}: expected an object with task, positive and reference"
            raise BaselineError(msg)
        positive = raw["positive"]
        if positive is not None and not isinstance(positive, str):
            msg = f"{where}.positive: expected a string or null, got {positive!r}"
            raise BaselineError(msg)
        try:
            reference = perf.Reference.from_dict(raw["reference"], f"{where}.reference")
        except ValueError as error:
            raise BaselineError(str(error)) from None
        if raw["task"] != reference.task:
            msg = f"{where}.task: {raw['task']!r} differs from the reference's {reference.task!r}"
            raise BaselineError(msg)
        return cls(reference.task, positive, reference)


@dataclass(frozen=True, kw_only=True)
class BaselineProfile:
    """The baseline of one model: its features and, if known, its outputs.

    ``created_from`` says where the data came from (a file name, say).
    ``created_at`` is when the baseline was built (epoch seconds), or None
    when unknown: the core reads no clock, so :func:`build_profile` leaves it
    None unless told, and the same data always gives the same bytes; the
    ``driftstream baseline`` command stamps the wall clock. The freshness
    check (``core/freshness.py``) judges a baseline's age by it, and skips
    baselines without one (those written before it existed).
    """

    model_id: str
    schema_version: int = SCHEMA_VERSION
    created_from: str = ""
    created_at: float | None = None
    n_rows: int
    features: Mapping[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    score: NumericProfile | None = None
    target: ColumnProfile | None = None
    performance: BaselinePerformance | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model_id": self.model_id,
            "created_from": self.created_from,
            "created_at": self.created_at,
            "n_rows": self.n_rows,
            "features": {name: profile.to_dict() for name, profile in self.features.items()},
            "prediction": _optional_dict(self.prediction),
            "score": _optional_dict(self.score),
            "target": _optional_dict(self.target),
            "performance": None if self.performance is None else self.performance.to_dict(),
        }

    def to_json(self) -> bytes:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineProfile:
        """Validate ``data`` (parsed JSON) and build the profile it describes."""
        root = _as_object(data, "")
        _check_version(root)
        _check_keys(root, _PROFILE_KEYS, "")
        n_rows = _int(root, "n_rows", "", minimum=1)
        return cls(
            model_id=_model_id(root),
            schema_version=SCHEMA_VERSION,
            created_from=_str(root, "created_from", ""),
            # Optional: baselines written before it was recorded lack it.
            created_at=_created_at(root),
            n_rows=n_rows,
            features=_features_from_dict(root, n_rows),
            prediction=_role_from_dict(root, "prediction", n_rows),
            score=_score_from_dict(root, n_rows),
            target=_role_from_dict(root, "target", n_rows),
            # Optional: baselines written before performance was recorded lack it.
            performance=(
                None
                if root.get("performance") is None
                else BaselinePerformance.from_dict(root["performance"])
            ),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> BaselineProfile:
        try:
            data = json.loads(text)
        except ValueError as exc:
            msg = f"baseline is not valid JSON: {exc}"
            raise BaselineError(msg) from exc
        return cls.from_dict(data)


def load_baseline(text: str | bytes) -> BaselineProfile:
    """Parse and validate a baseline profile from its JSON text."""
    return BaselineProfile.from_json(text)


# --- building -----------------------------------------------------------------


def infer_kind(column: npt.NDArray[Any]) -> str:
    """``"numeric"`` or ``"categorical"``, judged from the dtype and values.

    Float and integer dtypes are numeric, bools are categorical. An object
    column is numeric when every non-null value is an int or float (bools
    excluded), so an all-null object column counts as numeric.
    """
    kind = column.dtype.kind
    if kind in "fiu":
        return NUMERIC
    if kind == "O" and all(_is_number_or_none(value) for value in column.tolist()):
        return NUMERIC
    return CATEGORICAL


def category_label(value: object) -> str | None:
    """The category a training or live value falls in, or ``None`` for a null.

    Labels match how the value reads in JSON: bools become ``"true"`` and
    ``"false"``, and integral floats lose their ``.0`` (a CSV column of ints
    read as floats still yields ``"3"``). NaN and ±inf are nulls.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _float_label(float(value))
    return str(value)


def build_profile(
    columns: Mapping[str, npt.NDArray[Any]],
    *,
    model_id: str,
    target: str | None = None,
    prediction: str | None = None,
    score: str | None = None,
    kinds: Mapping[str, str] | None = None,
    bins: int = 20,
    top_k: int = 50,
    created_from: str = "",
    created_at: float | None = None,
    task: str | None = None,
    positive: str | None = None,
) -> BaselineProfile:
    """Profile training ``columns`` (equal-length 1-d arrays, by name).

    Every column that is not the ``target``, ``prediction`` or ``score`` is a
    feature. Kinds are inferred with :func:`infer_kind` unless ``kinds``
    overrides them; the score is always numeric. Numeric columns get at most
    ``bins`` quantile bins (fewer when quantiles coincide), categorical ones
    keep the ``top_k`` most frequent categories. Non-finite numbers are nulls.

    With both ``target`` and ``prediction``, the profile also records the
    model's performance (``core/performance.py``): ``task`` is regression
    for a numeric target, classification otherwise, unless given; the
    ``positive`` class defaults, for two classes, to "1" or "true" if one of
    them is present.

    ``created_at`` (epoch seconds, finite and >= 0) is recorded as given:
    the caller reads the clock, if it wants the time in the profile.
    """
    _check_settings(model_id, bins, top_k)
    if created_at is not None:
        created_at = _as_created_at(created_at, "created_at must be a finite number >= 0")
    n_rows = _row_count(columns)
    roles = _roles(columns, target=target, prediction=prediction, score=score)
    chosen = _kinds(columns, kinds, score)

    def profile(name: str) -> ColumnProfile:
        if chosen[name] == NUMERIC:
            return _numeric_profile(name, columns[name], bins)
        return _categorical_profile(name, columns[name], top_k)

    features = {name: profile(name) for name in columns if name not in roles}
    if not features:
        msg = "training data has no feature columns besides target, prediction and score"
        raise BaselineError(msg)
    return BaselineProfile(
        model_id=model_id,
        created_from=created_from,
        created_at=created_at,
        n_rows=n_rows,
        features=features,
        prediction=None if prediction is None else profile(prediction),
        score=None if score is None else _numeric_profile(score, columns[score], bins),
        target=None if target is None else profile(target),
        performance=_performance(columns, target, prediction, score, chosen, task, positive),
    )


def _performance(
    columns: Mapping[str, npt.NDArray[Any]],
    target: str | None,
    prediction: str | None,
    score: str | None,
    chosen: Mapping[str, str],
    task: str | None,
    positive: str | None,
) -> BaselinePerformance | None:
    if target is None or prediction is None:
        return None
    task = task or (perf.REGRESSION if chosen[target] == NUMERIC else perf.CLASSIFICATION)
    if task not in perf.TASKS:
        msg = f"task must be one of {list(perf.TASKS)}, got {task!r}"
        raise BaselineError(msg)
    if task == perf.REGRESSION:
        labels = _to_float(target, columns[target])
        predictions = _to_float(prediction, columns[prediction])
        known = np.isfinite(labels) & np.isfinite(predictions)
        reference = perf.reference(task, labels[known], predictions[known], None, None)
        return BaselinePerformance(task, None, reference)
    labels = np.array([category_label(v) for v in columns[target].tolist()], dtype=object)
    predictions = np.array([category_label(v) for v in columns[prediction].tolist()], dtype=object)
    known = (labels != None) & (predictions != None)  # noqa: E711 (elementwise)
    classes = sorted(set(labels[known].tolist()))
    if positive is None and len(classes) == 2:
        positive = next((c for c in ("1", "true") if c in classes), None)
    scores = None if score is None else _to_float(score, columns[score])[known]
    reference = perf.reference(task, labels[known], predictions[known], scores, positive)
    return BaselinePerformance(task, positive, reference)


def _check_settings(model_id: str, bins: int, top_k: int) -> None:
    if not isinstance(model_id, str) or not model_id:
        msg = f"model_id must be a non-empty string, got {model_id!r}"
        raise BaselineError(msg)
    if bins < 2:
        msg = f"bins must be at least 2, got {bins}"
        raise BaselineError(msg)
    if top_k < 1:
        msg = f"top_k must be at least 1, got {top_k}"
        raise BaselineError(msg)


def _row_count(columns: Mapping[str, npt.NDArray[Any]]) -> int:
    if not columns:
        msg = "training data has no columns"
        raise BaselineError(msg)
    lengths = {name: _column_length(name, column) for name, column in columns.items()}
    first_name, n_rows = next(iter(lengths.items()))
    for name, length in lengths.items():
        if length != n_rows:
            msg = f"column {name!r} has {length} rows but column {first_name!r} has {n_rows}"
            raise BaselineError(msg)
    if n_rows == 0:
        msg = "training data has no rows"
        raise BaselineError(msg)
    return n_rows


def _column_length(name: str, column: npt.NDArray[Any]) -> int:
    if np.ndim(column) != 1:
        msg = f"column {name!r} must be a 1-d array, got shape {np.shape(column)}"
        raise BaselineError(msg)
    return len(column)


def _roles(columns: Mapping[str, Any], **roles: str | None) -> set[str]:
    seen: dict[str, str] = {}
    for role, name in roles.items():
        if name is None:
            continue
        if name not in columns:
            available = ", ".join(repr(column) for column in columns)
            msg = f"{role} column {name!r} is not in the training data (columns: {available})"
            raise BaselineError(msg)
        if name in seen:
            msg = f"column {name!r} cannot be both {seen[name]} and {role}"
            raise BaselineError(msg)
        seen[name] = role
    return set(seen)


def _kinds(
    columns: Mapping[str, npt.NDArray[Any]], kinds: Mapping[str, str] | None, score: str | None
) -> dict[str, str]:
    overrides = dict(kinds or {})
    for name, kind in overrides.items():
        if name not in columns:
            msg = f"kinds names column {name!r}, which is not in the training data"
            raise BaselineError(msg)
        if kind not in KINDS:
            msg = f"kinds[{name!r}] must be 'numeric' or 'categorical', got {kind!r}"
            raise BaselineError(msg)
    if score is not None and overrides.setdefault(score, NUMERIC) != NUMERIC:
        msg = f"score column {score!r} must be numeric, but kinds says {overrides[score]!r}"
        raise BaselineError(msg)
    return {name: overrides.get(name) or infer_kind(column) for name, column in columns.items()}


def _numeric_profile(name: str, column: npt.NDArray[Any], bins: int) -> NumericProfile:
    values = _to_float(name, column)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        msg = (
            f"column {name!r} has no finite numeric values; drop it or profile it "
            f"as categorical with kinds={{{name!r}: 'categorical'}}"
        )
        raise BaselineError(msg)
    with np.errstate(over="ignore"):  # reported below, naming the column
        mean, std = float(finite.mean()), float(finite.std())
    if not (math.isfinite(mean) and math.isfinite(std)):
        msg = f"column {name!r} overflows float64 when computing its mean and std"
        raise BaselineError(msg)
    low, high = float(finite.min()), float(finite.max())
    edges = _quantile_edges(finite, bins, low, high)
    return NumericProfile(
        name=name,
        edges=tuple(edges.tolist()),
        counts=tuple(bin_counts(edges, finite).tolist()),
        count=int(finite.size),
        null_count=int(values.size - finite.size),
        mean=mean,
        std=std,
        min=low,
        max=high,
    )


def _to_float(name: str, column: npt.NDArray[Any]) -> FloatArray:
    if column.dtype.kind in "fiub":
        return column.astype(np.float64)
    try:
        return np.array([np.nan if v is None else v for v in column.tolist()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        msg = (
            f"column {name!r} is profiled as numeric but holds a value that is not a "
            f"number ({exc}); set kinds={{{name!r}: 'categorical'}} or drop it"
        )
        raise BaselineError(msg) from exc


def _quantile_edges(finite: FloatArray, bins: int, low: float, high: float) -> FloatArray:
    levels = np.arange(1, bins) / bins
    # Clipping guards the min <= e_0 and e_last <= max order that points() relies on.
    quantiles = np.clip(np.quantile(finite, levels), low, high)
    return validate_edges(np.unique(quantiles))


def _categorical_profile(name: str, column: npt.NDArray[Any], top_k: int) -> CategoricalProfile:
    labels = [category_label(value) for value in column.tolist()]
    tally = Counter(label for label in labels if label is not None)
    ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    top = ranked[:top_k]
    count = sum(tally.values())
    kept = sum(n for _, n in top)
    return CategoricalProfile(
        name=name,
        categories=tuple(label for label, _ in top),
        counts=tuple(n for _, n in top),
        other_count=count - kept,
        null_count=len(labels) - count,
        count=count,
    )


def _is_number_or_none(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool | np.bool_):
        return False
    return isinstance(value, int | float | np.integer | np.floating)


def _float_label(value: float) -> str | None:
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
        return str(int(value))
    return repr(value)


def _rate(null_count: int, count: int) -> float:
    total = null_count + count
    return null_count / total if total else 0.0


def _optional_dict(profile: ColumnProfile | None) -> dict[str, Any] | None:
    return None if profile is None else profile.to_dict()


# --- loading ------------------------------------------------------------------

_PROFILE_KEYS = frozenset(
    {"schema_version", "model_id", "created_from", "created_at", "n_rows", "features"}
    | {"prediction", "score", "target", "performance"}
)
_NUMERIC_KEYS = frozenset(NumericProfile.__dataclass_fields__) | {"kind"}
_CATEGORICAL_KEYS = frozenset(CategoricalProfile.__dataclass_fields__) | {"kind"}


def _check_version(root: Mapping[str, Any]) -> None:
    key = "schema_version"
    version = _field(root, key, "")
    if not _is_int(version):
        raise _wrong_type(key, "an integer", version)
    if version != SCHEMA_VERSION:
        msg = (
            f"baseline schema_version {version} is not supported "
            f"(this driftstream reads {SCHEMA_VERSION})"
        )
        raise BaselineError(msg)


def _model_id(root: Mapping[str, Any]) -> str:
    model_id = _str(root, "model_id", "")
    if not model_id:
        msg = "baseline key 'model_id' must not be empty"
        raise BaselineError(msg)
    return model_id


def _created_at(root: Mapping[str, Any]) -> float | None:
    key = "created_at"
    value = root.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(key, "a number or null", value)
    return _as_created_at(value, "baseline key 'created_at' must be finite and >= 0")


def _as_created_at(value: float, problem: str) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (math.isfinite(value) and value >= 0):
        msg = f"{problem}, got {value!r}"
        raise BaselineError(msg)
    return float(value)


def _features_from_dict(root: Mapping[str, Any], n_rows: int) -> dict[str, ColumnProfile]:
    features = _as_object(_field(root, "features", ""), "features")
    profiles = {}
    for name, raw in features.items():
        path = f"features.{name}"
        profile = _column_from_dict(raw, path, n_rows)
        if profile.name != name:
            msg = f"baseline key '{path}.name' is {profile.name!r} but the key says {name!r}"
            raise BaselineError(msg)
        profiles[name] = profile
    return profiles


def _role_from_dict(root: Mapping[str, Any], role: str, n_rows: int) -> ColumnProfile | None:
    raw = _field(root, role, "")
    return None if raw is None else _column_from_dict(raw, role, n_rows)


def _score_from_dict(root: Mapping[str, Any], n_rows: int) -> NumericProfile | None:
    profile = _role_from_dict(root, "score", n_rows)
    if isinstance(profile, CategoricalProfile):
        msg = "baseline key 'score.kind' must be 'numeric', got 'categorical'"
        raise BaselineError(msg)
    return profile


def _column_from_dict(value: object, path: str, n_rows: int) -> ColumnProfile:
    raw = _as_object(value, path)
    kind = _str(raw, "kind", path)
    if kind == NUMERIC:
        return _numeric_from_dict(raw, path, n_rows)
    if kind == CATEGORICAL:
        return _categorical_from_dict(raw, path, n_rows)
    msg = f"baseline key '{path}.kind' must be 'numeric' or 'categorical', got {kind!r}"
    raise BaselineError(msg)


def _numeric_from_dict(raw: Mapping[str, Any], path: str, n_rows: int) -> NumericProfile:
    _check_keys(raw, _NUMERIC_KEYS, path)
    edges = _edges(raw, path)
    counts = _counts(raw, "counts", path)
    if len(counts) != len(edges) + 1:
        msg = (
            f"baseline key '{path}.counts' has {len(counts)} entries "
            f"but needs {len(edges) + 1} (one more than '{path}.edges')"
        )
        raise BaselineError(msg)
    profile = NumericProfile(
        name=_str(raw, "name", path),
        edges=edges,
        counts=counts,
        count=_int(raw, "count", path, minimum=1),
        null_count=_int(raw, "null_count", path),
        mean=_number(raw, "mean", path),
        std=_number(raw, "std", path),
        min=_number(raw, "min", path),
        max=_number(raw, "max", path),
    )
    _check_totals(path, sum(counts), profile.count, profile.null_count, n_rows)
    _check_range(profile, path)
    return profile


def _categorical_from_dict(raw: Mapping[str, Any], path: str, n_rows: int) -> CategoricalProfile:
    _check_keys(raw, _CATEGORICAL_KEYS, path)
    categories = _categories(raw, path)
    counts = _counts(raw, "counts", path)
    if len(counts) != len(categories):
        msg = (
            f"baseline key '{path}.counts' has {len(counts)} entries "
            f"but '{path}.categories' has {len(categories)}"
        )
        raise BaselineError(msg)
    profile = CategoricalProfile(
        name=_str(raw, "name", path),
        categories=categories,
        counts=counts,
        other_count=_int(raw, "other_count", path),
        null_count=_int(raw, "null_count", path),
        count=_int(raw, "count", path),
    )
    tallied = sum(counts) + profile.other_count
    _check_totals(path, tallied, profile.count, profile.null_count, n_rows)
    return profile


def _edges(raw: Mapping[str, Any], path: str) -> tuple[float, ...]:
    values = _list(raw, "edges", path)
    edges = tuple(_as_number(value, f"{path}.edges[{i}]") for i, value in enumerate(values))
    try:
        validate_edges(edges)
    except ValueError as exc:
        msg = f"baseline key '{path}.edges' is invalid: {exc}"
        raise BaselineError(msg) from exc
    return edges


def _counts(raw: Mapping[str, Any], key: str, path: str) -> tuple[int, ...]:
    values = _list(raw, key, path)
    return tuple(_as_int(value, f"{path}.{key}[{i}]", 0) for i, value in enumerate(values))


def _categories(raw: Mapping[str, Any], path: str) -> tuple[str, ...]:
    values = _list(raw, "categories", path)
    categories = tuple(_as_str(value, f"{path}.categories[{i}]") for i, value in enumerate(values))
    repeated = [name for name, n in Counter(categories).items() if n > 1]
    if repeated:
        msg = f"baseline key '{path}.categories' repeats {repeated[0]!r}"
        raise BaselineError(msg)
    return categories


def _check_totals(path: str, tallied: int, count: int, null_count: int, n_rows: int) -> None:
    if tallied != count:
        msg = f"baseline key '{path}.counts' adds up to {tallied} but '{path}.count' is {count}"
        raise BaselineError(msg)
    if count + null_count != n_rows:
        msg = (
            f"baseline key '{path}' has count {count} + null_count {null_count}, "
            f"which does not match n_rows {n_rows}"
        )
        raise BaselineError(msg)


def _check_range(profile: NumericProfile, path: str) -> None:
    if profile.std < 0:
        msg = f"baseline key '{path}.std' must be >= 0, got {profile.std}"
        raise BaselineError(msg)
    if profile.min > profile.edges[0]:
        msg = f"baseline key '{path}.min' ({profile.min}) is above the first edge"
        raise BaselineError(msg)
    if profile.max < profile.edges[-1]:
        msg = f"baseline key '{path}.max' ({profile.max}) is below the last edge"
        raise BaselineError(msg)


def _check_keys(raw: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            msg = f"baseline has unknown key {_join(path, key)!r}"
            raise BaselineError(msg)


def _field(raw: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in raw:
        msg = f"baseline is missing key {_join(path, key)!r}"
        raise BaselineError(msg)
    return raw[key]


def _int(raw: Mapping[str, Any], key: str, path: str, minimum: int = 0) -> int:
    return _as_int(_field(raw, key, path), _join(path, key), minimum)


def _number(raw: Mapping[str, Any], key: str, path: str) -> float:
    return _as_number(_field(raw, key, path), _join(path, key))


def _str(raw: Mapping[str, Any], key: str, path: str) -> str:
    return _as_str(_field(raw, key, path), _join(path, key))


def _list(raw: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = _field(raw, key, path)
    if not isinstance(value, list):
        raise _wrong_type(_join(path, key), "an array", value)
    return value


def _as_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        if not path:
            msg = f"baseline profile must be a JSON object, got {_json_type(value)}"
            raise BaselineError(msg)
        raise _wrong_type(path, "an object", value)
    return value


def _as_int(value: object, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(path, "an integer", value)
    if value < minimum:
        msg = f"baseline key {path!r} must be >= {minimum}, got {value}"
        raise BaselineError(msg)
    return value


def _as_number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(path, "a number", value)
    if not math.isfinite(value):
        msg = f"baseline key {path!r} must be finite, got {value}"
        raise BaselineError(msg)
    return float(value)


def _as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _wrong_type(path, "a string", value)
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong_type(path: str, expected: str, value: object) -> BaselineError:
    msg = f"baseline key {path!r} must be {expected}, got {_json_type(value)}"
    return BaselineError(msg)


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    names |= {list: "array", dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
