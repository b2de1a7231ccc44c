import copy
import importlib.util
import json
import math
from importlib import resources
from typing import Any

import numpy as np
import pytest

from driftstream.core import performance as perf
from driftstream.core.baseline import (
    SCHEMA_VERSION,
    BaselineError,
    BaselineProfile,
    CategoricalProfile,
    NumericProfile,
    build_profile,
    category_label,
    infer_kind,
    load_baseline,
)


def objects(*values: Any) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def sample_columns(n: int = 2000, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 1.5, n)
    income[::50] = np.nan
    return {
        "age": rng.normal(40, 12, n),
        "income": income,
        "visits": rng.poisson(3, n).astype(np.int64),
        "plan": rng.choice(np.array(["basic", "pro", "team"], dtype=object), n),
        "active": rng.random(n) < 0.3,
        "label": rng.choice(np.array(["churn", "stay"], dtype=object), n),
        "predicted": rng.choice(np.array(["churn", "stay"], dtype=object), n),
        "proba": rng.random(n),
    }


def sample_profile() -> BaselineProfile:
    return build_profile(
        sample_columns(),
        model_id="churn",
        target="label",
        prediction="predicted",
        score="proba",
        created_from="train.parquet",
    )


# --- kind inference and labels ------------------------------------------------


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        (np.array([1.5, np.nan]), "numeric"),
        (np.array([1, 2], dtype=np.int32), "numeric"),
        (np.array([1, 2], dtype=np.uint8), "numeric"),
        (np.array([True, False]), "categorical"),
        (np.array(["a", "b"]), "categorical"),
        (objects(1, 2.5, None, np.int64(3), np.float32(1)), "numeric"),
        (objects(1, "a"), "categorical"),
        (objects(True, 1), "categorical"),
        (objects(None, None), "numeric"),
    ],
)
def test_infer_kind(column: np.ndarray, kind: str) -> None:
    assert infer_kind(column) == kind


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (None, None),
        (True, "true"),
        (np.bool_(False), "false"),
        (3, "3"),
        (np.int64(-4), "-4"),
        (3.0, "3"),
        (2.5, "2.5"),
        (1e20, "1e+20"),
        (float("nan"), None),
        (float("inf"), None),
        ("pro", "pro"),
    ],
)
def test_category_label(value: object, label: str | None) -> None:
    assert category_label(value) == label


# --- numeric profiles ---------------------------------------------------------


def test_continuous_data_gets_equal_mass_bins() -> None:
    values = np.random.default_rng(1).normal(0, 1, 20_000)
    profile = build_profile({"x": values}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    assert len(profile.edges) == 19
    assert len(profile.counts) == 20
    assert sum(profile.counts) == profile.count == 20_000
    assert max(abs(c - 1000) for c in profile.counts) <= 10


def test_edges_are_quantiles_of_the_data() -> None:
    values = np.random.default_rng(2).exponential(3, 5000)
    profile = build_profile({"x": values}, model_id="m", bins=4).features["x"]
    assert isinstance(profile, NumericProfile)
    np.testing.assert_allclose(profile.edges, np.quantile(values, [0.25, 0.5, 0.75]))


def test_heavy_tails_keep_edges_increasing_and_points_sorted() -> None:
    values = np.random.default_rng(3).standard_cauchy(5000) * 1e6
    profile = build_profile({"x": values}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    assert np.all(np.diff(profile.edges) > 0)
    assert sum(profile.counts) == profile.count == 5000
    assert profile.min <= profile.edges[0] and profile.edges[-1] <= profile.max
    points = profile.points()
    assert len(points) == len(profile.counts)
    assert np.all(np.diff(points) >= 0)
    assert profile.min <= points[0] <= profile.edges[0]
    assert profile.edges[-1] <= points[-1] <= profile.max
    # the far tail does not pull the outer points out to the extremes
    assert points[-1] - profile.edges[-1] < profile.max - profile.edges[-1]


def test_points_are_midpoints_with_outer_bins_half_a_bin_out() -> None:
    profile = NumericProfile(
        name="x",
        edges=(1.0, 3.0, 7.0),
        counts=(1, 1, 1, 1),
        count=4,
        null_count=0,
        mean=0.0,
        std=1.0,
        min=0.0,
        max=9.0,
    )
    # inner midpoints 2 and 5; outer bins half the adjacent inner width out
    np.testing.assert_array_equal(profile.points(), [0.0, 2.0, 5.0, 9.0])
    wide = NumericProfile(
        name="x",
        edges=(1.0, 3.0, 7.0),
        counts=(1, 1, 1, 1),
        count=4,
        null_count=0,
        mean=0.0,
        std=1.0,
        min=-100.0,
        max=100.0,
    )
    np.testing.assert_array_equal(wide.points(), [0.0, 2.0, 5.0, 9.0])


def test_cdf_is_the_baseline_share_below_each_value() -> None:
    values = np.random.default_rng(5).lognormal(4.0, 0.8, 20000)
    profile = build_profile({"x": values}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    u = profile.cdf(values)
    assert u.min() >= 0.0 and u.max() <= 1.0
    # close to uniform on the training data itself, whatever the shape
    np.testing.assert_allclose(np.quantile(u, [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.01)
    assert profile.cdf(np.array([-1e9, 1e9])).tolist() == [0.0, 1.0]


def test_few_distinct_ints_get_fewer_bins() -> None:
    values = np.random.default_rng(4).integers(0, 4, 3000)
    profile = build_profile({"x": values}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    assert 1 <= len(profile.edges) < 19
    assert np.all(np.diff(profile.edges) > 0)
    assert sum(profile.counts) == 3000
    assert profile.mean == pytest.approx(values.mean())


def test_constant_column_has_one_edge() -> None:
    profile = build_profile({"x": np.full(10, 5)}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    assert profile.edges == (5.0,)
    assert profile.counts == (0, 10)
    assert profile.std == 0.0
    np.testing.assert_array_equal(profile.points(), [5.0, 5.0])


def test_nan_none_and_inf_are_nulls() -> None:
    values = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 4.0, 5.0, np.nan])
    profile = build_profile({"x": values}, model_id="m", bins=2).features["x"]
    assert isinstance(profile, NumericProfile)
    finite = values[np.isfinite(values)]
    assert (profile.count, profile.null_count) == (4, 4)
    assert profile.null_rate == 0.5
    assert profile.mean == pytest.approx(finite.mean())
    assert profile.std == pytest.approx(finite.std())
    assert (profile.min, profile.max) == (1.0, 5.0)


def test_object_numbers_with_none_are_numeric() -> None:
    profile = build_profile({"x": objects(1, None, 2.5, 4)}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    assert (profile.count, profile.null_count) == (3, 1)
    assert profile.mean == pytest.approx(2.5)


def test_mean_and_std_match_numpy_population_values() -> None:
    profile = sample_profile().features["income"]
    values = sample_columns()["income"]
    assert isinstance(profile, NumericProfile)
    assert profile.mean == pytest.approx(np.nanmean(values))
    assert profile.std == pytest.approx(np.nanstd(values))
    assert profile.null_count == 40
    assert profile.null_rate == pytest.approx(0.02)


# --- categorical profiles -----------------------------------------------------


def test_top_k_keeps_most_frequent_and_counts_the_rest() -> None:
    values: list[str | None] = [f"c{i:02d}" for i in range(60) for _ in range(i + 1)]
    values += [None] * 5
    column = objects(*values)
    profile = build_profile({"x": column}, model_id="m", top_k=50).features["x"]
    assert isinstance(profile, CategoricalProfile)
    assert profile.categories == tuple(f"c{i:02d}" for i in range(59, 9, -1))
    assert profile.counts == tuple(range(60, 10, -1))
    assert profile.other_count == sum(range(1, 11))
    assert profile.count == sum(range(1, 61))
    assert profile.null_count == 5
    assert profile.vector().sum() == profile.count
    assert profile.vector()[-1] == profile.other_count


def test_ties_are_broken_by_name() -> None:
    column = objects("b", "a", "c", "a", "b", "d")
    profile = build_profile({"x": column}, model_id="m", top_k=3).features["x"]
    assert isinstance(profile, CategoricalProfile)
    assert profile.categories == ("a", "b", "c")
    assert profile.counts == (2, 2, 1)
    assert profile.other_count == 1


def test_bools_become_json_style_categories() -> None:
    profile = build_profile(
        {"flag": objects(True, None, False, True), "raw": np.array([True, False])[[0, 0, 1, 0]]},
        model_id="m",
    ).features
    flag, raw = profile["flag"], profile["raw"]
    assert isinstance(flag, CategoricalProfile) and isinstance(raw, CategoricalProfile)
    assert flag.categories == ("true", "false")
    assert flag.counts == (2, 1)
    assert flag.null_rate == 0.25
    assert raw.categories == ("true", "false")


def test_kinds_override_makes_float_codes_categorical() -> None:
    column = np.array([1.0, 2.0, 1.0, np.nan])
    profile = build_profile({"code": column}, model_id="m", kinds={"code": "categorical"})
    code = profile.features["code"]
    assert isinstance(code, CategoricalProfile)
    assert code.categories == ("1", "2")
    assert code.null_count == 1


# --- roles ----------------------------------------------------------------------


def test_roles_are_profiled_apart_from_features() -> None:
    profile = sample_profile()
    assert list(profile.features) == ["age", "income", "visits", "plan", "active"]
    assert isinstance(profile.target, CategoricalProfile)
    assert isinstance(profile.prediction, CategoricalProfile)
    assert isinstance(profile.score, NumericProfile)
    assert profile.target.name == "label"
    assert profile.n_rows == 2000
    assert profile.schema_version == SCHEMA_VERSION


def test_numeric_prediction_is_profiled_as_numeric() -> None:
    columns = {"x": np.arange(10.0), "y_hat": np.arange(10.0) * 2}
    profile = build_profile(columns, model_id="m", prediction="y_hat")
    assert isinstance(profile.prediction, NumericProfile)
    assert profile.target is None and profile.score is None


def test_kinds_can_make_int_target_categorical() -> None:
    columns = {"x": np.arange(6.0), "y": np.array([0, 1, 1, 0, 1, 1])}
    profile = build_profile(columns, model_id="m", target="y", kinds={"y": "categorical"})
    assert isinstance(profile.target, CategoricalProfile)
    assert profile.target.categories == ("1", "0")


# --- build errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "options", "message"),
    [
        ({}, {}, "no columns"),
        ({"x": np.array([])}, {}, "no rows"),
        ({"x": np.zeros(3), "y": np.zeros(2)}, {}, "column 'y' has 2 rows"),
        ({"x": np.zeros((2, 2))}, {}, "column 'x' must be a 1-d array"),
        ({"x": np.zeros(3)}, {"target": "y"}, "target column 'y' is not in the training data"),
        ({"x": np.zeros(3)}, {"score": "p"}, "(columns: 'x')"),
        ({"x": np.zeros(3), "y": np.zeros(3)}, {"target": "y", "prediction": "y"}, "both"),
        ({"x": np.zeros(3)}, {"kinds": {"z": "numeric"}}, "kinds names column 'z'"),
        ({"x": np.zeros(3)}, {"kinds": {"x": "ordinal"}}, "kinds['x'] must be"),
        (
            {"x": np.zeros(3), "p": np.zeros(3)},
            {"score": "p", "kinds": {"p": "categorical"}},
            "score column 'p' must be numeric",
        ),
        ({"x": np.full(3, np.nan)}, {}, "column 'x' has no finite numeric values"),
        ({"x": objects(None, None)}, {}, "kinds={'x': 'categorical'}"),
        (
            {"x": objects("a", "b")},
            {"kinds": {"x": "numeric"}},
            "column 'x' is profiled as numeric",
        ),
        ({"x": np.full(3, 1e308)}, {}, "column 'x' overflows"),
        ({"y": np.zeros(3)}, {"target": "y"}, "no feature columns"),
        ({"x": np.zeros(3)}, {"bins": 1}, "bins must be at least 2"),
        ({"x": np.zeros(3)}, {"top_k": 0}, "top_k must be at least 1"),
        ({"x": np.zeros(3)}, {"model_id": ""}, "model_id must be a non-empty string"),
    ],
)
def test_build_errors_name_the_problem(
    columns: dict[str, np.ndarray], options: dict[str, Any], message: str
) -> None:
    options = {"model_id": "m", **options}
    with pytest.raises(BaselineError) as info:
        build_profile(columns, **options)
    assert message in str(info.value)


# --- serialisation --------------------------------------------------------------


def test_json_round_trip_gives_an_equal_profile() -> None:
    profile = sample_profile()
    assert BaselineProfile.from_json(profile.to_json()) == profile
    assert load_baseline(profile.to_json().decode()) == profile


def test_to_json_is_byte_deterministic() -> None:
    first, second = sample_profile().to_json(), sample_profile().to_json()
    assert first == second
    assert first.endswith(b"}\n")
    assert list(json.loads(first)) == [
        "schema_version",
        "model_id",
        "created_from",
        "created_at",
        "n_rows",
        "features",
        "prediction",
        "score",
        "target",
        "performance",  # recorded: the sample has a target and a prediction
    ]


def test_profile_dict_layout() -> None:
    columns = {"x": np.array([1.0, 2.0, 3.0, 4.0]), "c": objects("a", "b", "a", None)}
    data = build_profile(columns, model_id="m", bins=2, created_from="t.csv").to_dict()
    assert data == {
        "schema_version": 1,
        "model_id": "m",
        "created_from": "t.csv",
        "created_at": None,
        "n_rows": 4,
        "features": {
            "x": {
                "name": "x",
                "kind": "numeric",
                "count": 4,
                "null_count": 0,
                "mean": 2.5,
                "std": pytest.approx(np.std([1, 2, 3, 4])),
                "min": 1.0,
                "max": 4.0,
                "edges": [2.5],
                "counts": [2, 2],
            },
            "c": {
                "name": "c",
                "kind": "categorical",
                "count": 3,
                "null_count": 1,
                "categories": ["a", "b"],
                "counts": [2, 1],
                "other_count": 0,
            },
        },
        "prediction": None,
        "score": None,
        "target": None,
        "performance": None,
    }


# --- validation errors ----------------------------------------------------------


def edit(path: str, value: Any) -> Any:
    """A mutation that sets (or, with ``...``, deletes) the item at a dotted path."""

    def step(node: Any, key: str) -> Any:
        return int(key) if isinstance(node, list) else key

    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[step(node, key)]
        if value is ...:
            del node[step(node, last)]
        else:
            node[step(node, last)] = value

    return apply


VALIDATION_CASES = [
    (edit("schema_version", ...), "missing key 'schema_version'"),
    (edit("schema_version", "1"), "'schema_version' must be an integer, got string"),
    (edit("model_id", ...), "missing key 'model_id'"),
    (edit("model_id", ""), "'model_id' must not be empty"),
    (edit("model_id", 3), "'model_id' must be a string, got integer"),
    (edit("created_from", None), "'created_from' must be a string, got null"),
    (edit("n_rows", 0), "'n_rows' must be >= 1"),
    (edit("n_rows", 2000.0), "'n_rows' must be an integer, got number"),
    (edit("extra", 1), "unknown key 'extra'"),
    (edit("features", []), "'features' must be an object, got array"),
    (edit("features.age", 5), "'features.age' must be an object, got integer"),
    (edit("features.age.kind", ...), "missing key 'features.age.kind'"),
    (edit("features.age.kind", "ordinal"), "'features.age.kind' must be 'numeric' or"),
    (edit("features.age.name", "Age"), "'features.age.name' is 'Age'"),
    (edit("features.age.edges", ...), "missing key 'features.age.edges'"),
    (edit("features.age.edges", "1,2"), "'features.age.edges' must be an array"),
    (edit("features.age.edges", []), "'features.age.edges' is invalid"),
    (edit("features.age.edges.3", "x"), "'features.age.edges[3]' must be a number"),
    (edit("features.age.edges.3", True), "'features.age.edges[3]' must be a number, got boolean"),
    (edit("features.age.edges.3", float("nan")), "'features.age.edges[3]' must be finite"),
    (edit("features.age.edges.3", -1e9), "'features.age.edges' is invalid"),
    (edit("features.age.counts.3", -1), "'features.age.counts[3]' must be >= 0"),
    (edit("features.age.counts.3", 1.5), "'features.age.counts[3]' must be an integer"),
    (edit("features.age.counts", [2000]), "'features.age.counts' has 1 entries but needs 20"),
    (edit("features.age.count", 1999), "'features.age.counts' adds up to 2000"),
    (edit("features.age.null_count", 3), "'features.age' has count 2000 + null_count 3"),
    (edit("features.age.null_count", -1), "'features.age.null_count' must be >= 0"),
    (edit("features.age.mean", None), "'features.age.mean' must be a number, got null"),
    (edit("features.age.std", -1.0), "'features.age.std' must be >= 0"),
    (edit("features.age.min", 1e9), "'features.age.min' (1000000000.0) is above the first edge"),
    (edit("features.age.max", -1e9), "'features.age.max' (-1000000000.0) is below the last"),
    (edit("features.age.bins", 20), "unknown key 'features.age.bins'"),
    (edit("features.plan.categories", ...), "missing key 'features.plan.categories'"),
    (edit("features.plan.categories.0", 1), "'features.plan.categories[0]' must be a string"),
    (edit("features.plan.categories.0", "pro"), "'features.plan.categories' repeats 'pro'"),
    (edit("features.plan.counts", [1, 2]), "'features.plan.counts' has 2 entries but"),
    (edit("features.plan.other_count", 5), "'features.plan.counts' adds up to 2005"),
    (edit("features.plan.other_count", ...), "missing key 'features.plan.other_count'"),
    (edit("features.plan.edges", [1.0]), "unknown key 'features.plan.edges'"),
    (edit("prediction", ...), "missing key 'prediction'"),
    (edit("prediction.counts", "x"), "'prediction.counts' must be an array"),
    (edit("target.null_count", 1), "'target' has count 2000 + null_count 1"),
    (edit("score.kind", "categorical"), "unknown key 'score.mean'"),
    (edit("performance", []), "performance: expected an object with task, positive and"),
    (edit("performance.extra", 1), "performance: expected an object with task, positive and"),
    (edit("performance.positive", ...), "performance: expected an object with task, positive"),
    (edit("performance.positive", 1), "performance.positive: expected a string or null, got 1"),
    (edit("performance.task", "regression"), "performance.task: 'regression' differs from"),
    (edit("performance.reference.task", "ranking"), "performance.reference.task: expected one"),
    (edit("performance.reference.size", 0), "performance.reference.size: expected a positive"),
    (edit("performance.reference.metrics.mae", {}), "performance.reference.metrics: expected"),
    (
        edit("performance.reference.metrics.roc_auc.value", "x"),
        "performance.reference.metrics.roc_auc.value: expected a finite number or null",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), VALIDATION_CASES)
def test_validation_errors_name_the_key_path(mutate: Any, message: str) -> None:
    data = sample_profile().to_dict()
    mutate(data)
    with pytest.raises(BaselineError) as info:
        BaselineProfile.from_dict(data)
    assert message in str(info.value)


def test_score_must_be_numeric() -> None:
    data = sample_profile().to_dict()
    data["score"] = copy.deepcopy(data["target"])
    with pytest.raises(BaselineError, match=r"'score\.kind' must be 'numeric'"):
        BaselineProfile.from_dict(data)


def test_unsupported_schema_version_is_refused_clearly() -> None:
    data = sample_profile().to_dict()
    data["schema_version"] = 7
    data["new_in_v7"] = {}
    with pytest.raises(BaselineError) as info:
        BaselineProfile.from_dict(data)
    assert (
        str(info.value) == "baseline schema_version 7 is not supported (this driftstream reads 1)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "baseline is not valid JSON"),
        (b"\xff\xfe{", "baseline is not valid JSON"),
        ("[1, 2]", "baseline profile must be a JSON object, got array"),
    ],
)
def test_from_json_rejects_non_profiles(text: str | bytes, message: str) -> None:
    with pytest.raises(BaselineError, match=message):
        load_baseline(text)


def test_baseline_error_is_a_value_error() -> None:
    assert issubclass(BaselineError, ValueError)


# --- performance ----------------------------------------------------------------


def binary_columns(n: int = 3000, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    proba = 1 / (1 + np.exp(-2 * x))
    return {
        "x": x,
        "label": rng.random(n) < proba,  # bools: the classes are "true" and "false"
        "predicted": proba > 0.5,
        "proba": proba,
    }


def test_baselines_without_performance_still_load() -> None:
    data = sample_profile().to_dict()
    assert data["performance"] is not None
    del data["performance"]  # written before performance was recorded
    assert BaselineProfile.from_dict(data).performance is None
    data["performance"] = None
    assert BaselineProfile.from_dict(data).performance is None


def test_created_at_is_recorded_as_given_and_round_trips() -> None:
    columns = {"x": np.array([1.0, 2.0, 3.0, 4.0])}
    assert build_profile(columns, model_id="m").created_at is None  # the core reads no clock
    profile = build_profile(columns, model_id="m", created_at=1_767_225_600.5)
    assert profile.created_at == 1_767_225_600.5
    assert json.loads(profile.to_json())["created_at"] == 1_767_225_600.5
    assert BaselineProfile.from_json(profile.to_json()) == profile
    assert load_baseline(profile.to_json()).created_at == 1_767_225_600.5
    schema = load_schema()
    assert conforms(schema, schema, json.loads(profile.to_json()))
    for bad in (-1.0, math.inf, math.nan, True, "2026-01-01"):
        with pytest.raises(BaselineError, match="created_at must be a finite number >= 0"):
            build_profile(columns, model_id="m", created_at=bad)  # type: ignore[arg-type]


def test_baselines_without_created_at_still_load() -> None:
    data = sample_profile().to_dict()
    del data["created_at"]  # written before the creation time was recorded
    assert BaselineProfile.from_dict(data).created_at is None
    data["created_at"] = 1000
    assert BaselineProfile.from_dict(data).created_at == 1000.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "'created_at' must be a number or null, got string"),
        (False, "'created_at' must be a number or null, got boolean"),
        (-5, "'created_at' must be finite and >= 0, got -5"),
    ],
)
def test_a_bad_created_at_is_refused_naming_the_key(value: Any, message: str) -> None:
    data = sample_profile().to_dict()
    data["created_at"] = value
    with pytest.raises(BaselineError, match=message):
        BaselineProfile.from_dict(data)


def test_performance_needs_both_target_and_prediction() -> None:
    columns = binary_columns()
    assert build_profile(columns, model_id="m", target="label").performance is None
    assert build_profile(columns, model_id="m", prediction="predicted").performance is None
    both = build_profile(columns, model_id="m", target="label", prediction="predicted")
    assert both.performance is not None


def test_binary_classification_is_inferred_with_its_positive_class() -> None:
    columns = binary_columns()
    profile = build_profile(
        columns, model_id="m", target="label", prediction="predicted", score="proba"
    )
    found = profile.performance
    assert found is not None
    assert (found.task, found.positive) == (perf.CLASSIFICATION, "true")
    labels = np.where(columns["label"], "true", "false").astype(object)
    predictions = np.where(columns["predicted"], "true", "false").astype(object)
    expected = perf.classification(labels, predictions, columns["proba"], "true")
    for name in perf.CLASSIFICATION_METRICS:
        assert found.reference.values[name] == pytest.approx(expected[name])
    assert BaselineProfile.from_json(profile.to_json()) == profile


def test_integer_classes_need_the_task_and_default_to_positive_one() -> None:
    columns = binary_columns()
    columns["label"] = columns["label"].astype(np.int64)
    columns["predicted"] = columns["predicted"].astype(np.int64)
    numeric = build_profile(columns, model_id="m", target="label", prediction="predicted")
    assert numeric.performance is not None and numeric.performance.task == perf.REGRESSION
    profile = build_profile(
        columns, model_id="m", target="label", prediction="predicted", task="classification"
    )
    assert profile.performance is not None
    assert (profile.performance.task, profile.performance.positive) == ("classification", "1")
    chosen = build_profile(
        columns,
        model_id="m",
        target="label",
        prediction="predicted",
        task="classification",
        positive="0",
    )
    assert chosen.performance is not None and chosen.performance.positive == "0"
    assert chosen.performance.reference.values["recall"] == pytest.approx(
        perf.classification(
            columns["label"].astype(str).astype(object),
            columns["predicted"].astype(str).astype(object),
            None,
            "0",
        )["recall"]
    )


def test_multiclass_and_unnamed_classes_have_no_positive() -> None:
    rng = np.random.default_rng(4)
    columns = {
        "x": rng.normal(0, 1, 600),
        "label": rng.choice(np.array(["a", "b", "c"], dtype=object), 600),
        "predicted": rng.choice(np.array(["a", "b", "c"], dtype=object), 600),
    }
    found = build_profile(columns, model_id="m", target="label", prediction="predicted")
    assert found.performance is not None and found.performance.positive is None
    assert math.isfinite(found.performance.reference.values["accuracy"])
    assert math.isnan(found.performance.reference.values["f1"])
    churn = sample_profile().performance  # churn/stay: neither "1" nor "true"
    assert churn is not None and churn.positive is None


def test_regression_is_inferred_from_a_numeric_target_skipping_nulls() -> None:
    rng = np.random.default_rng(5)
    target = rng.normal(0, 1, 1000)
    prediction = target + rng.normal(0, 0.5, 1000)
    target[::100] = np.nan
    columns = {"x": rng.normal(0, 1, 1000), "y": target, "y_hat": prediction}
    profile = build_profile(columns, model_id="m", target="y", prediction="y_hat")
    found = profile.performance
    assert found is not None and (found.task, found.positive) == (perf.REGRESSION, None)
    known = np.isfinite(target)
    expected = perf.regression(target[known], prediction[known])
    assert found.reference.values["mae"] == pytest.approx(expected["mae"])
    assert found.reference.values["r2"] == pytest.approx(expected["r2"])
    data = json.loads(profile.to_json())
    assert data["performance"]["task"] == "regression"
    schema = load_schema()
    assert conforms(schema, schema, data)


def test_unknown_task_is_refused() -> None:
    with pytest.raises(BaselineError, match="task must be one of"):
        build_profile(
            binary_columns(), model_id="m", target="label", prediction="predicted", task="rank"
        )


# --- JSON schema ----------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    text = resources.files("driftstream").joinpath("schemas/baseline.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "null": type(None),
    "boolean": bool,
}


def conforms(schema: dict[str, Any], node: dict[str, Any], value: Any) -> bool:
    """The subset of draft 2020-12 the baseline schema uses, strict about keys."""
    node = resolve(schema, node)
    if "oneOf" in node:
        return sum(conforms(schema, branch, value) for branch in node["oneOf"]) == 1
    if "const" in node and value != node["const"]:
        return False
    if not type_matches(node.get("type"), value):
        return False
    if "minimum" in node and value < node["minimum"]:
        return False
    if isinstance(value, list):
        return array_conforms(schema, node, value)
    if isinstance(value, dict):
        return object_conforms(schema, node, value)
    return not ("minLength" in node and len(value) < node["minLength"])


def type_matches(expected: str | None, value: Any) -> bool:
    if expected is None:
        return True
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "integer":
        return is_number and isinstance(value, int)
    if expected == "number":
        return is_number
    return isinstance(value, JSON_TYPES[expected]) and not (
        expected != "boolean" and isinstance(value, bool)
    )


def array_conforms(schema: dict[str, Any], node: dict[str, Any], value: list[Any]) -> bool:
    if len(value) < node.get("minItems", 0):
        return False
    if node.get("uniqueItems") and len(set(map(json.dumps, value))) != len(value):
        return False
    return all(conforms(schema, node.get("items", {}), item) for item in value)


def object_conforms(schema: dict[str, Any], node: dict[str, Any], value: dict[str, Any]) -> bool:
    properties = node.get("properties", {})
    if not set(node.get("required", [])) <= set(value):
        return False
    extra = node.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            if not conforms(schema, properties[key], item):
                return False
        elif extra is False or (isinstance(extra, dict) and not conforms(schema, extra, item)):
            return False
    return True


def object_nodes(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for child in node.values():
            found += object_nodes(child)
    elif isinstance(node, list):
        for child in node:
            found += object_nodes(child)
    return found


def test_schema_declares_every_key_as_required_and_documented() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for node in object_nodes(schema):
        assert set(node["required"]) == set(node["properties"])
        assert node["additionalProperties"] is False
        for name, prop in node["properties"].items():
            assert prop.get("description"), name


def test_schema_keys_match_the_serialised_profile() -> None:
    schema = load_schema()
    assert set(schema["required"]) == set(sample_profile().to_dict())
    numeric_keys = set(schema["$defs"]["numeric"]["properties"])
    categorical_keys = set(schema["$defs"]["categorical"]["properties"])
    profile = sample_profile()
    assert set(profile.features["age"].to_dict()) == numeric_keys
    assert set(profile.features["plan"].to_dict()) == categorical_keys


def test_built_profile_conforms_to_the_schema() -> None:
    schema = load_schema()
    data = json.loads(sample_profile().to_json())
    assert conforms(schema, schema, data)


@pytest.mark.parametrize(
    "mutate",
    [
        edit("features.age.extra", 1),
        edit("features.age.count", ...),
        edit("score", {"kind": "categorical"}),
        edit("schema_version", 2),
        edit("features.plan.counts", [-1]),
    ],
)
def test_schema_checker_rejects_bad_layouts(mutate: Any) -> None:
    schema = load_schema()
    data = sample_profile().to_dict()
    mutate(data)
    assert not conforms(schema, schema, data)


@pytest.mark.skipif(
    importlib.util.find_spec("jsonschema") is None, reason="jsonschema is not installed"
)
def test_built_profile_passes_jsonschema() -> None:
    import jsonschema

    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(sample_profile().to_json()))
