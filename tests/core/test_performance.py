import json
import math
from typing import Any

import numpy as np
import pytest

from driftstream.core import performance as perf
from driftstream.core.performance import (
    CLASSIFICATION,
    CLASSIFICATION_METRICS,
    HIGHER_IS_BETTER,
    REGRESSION,
    REGRESSION_METRICS,
    Reference,
    classification,
    judge,
    reference,
    regression,
    roc_auc,
)


def objects(*values: str) -> np.ndarray:
    return np.array(values, dtype=object)


def floats(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --- classification metrics -------------------------------------------------------


def test_binary_metrics_match_hand_computation() -> None:
    labels = objects("1", "1", "1", "0", "0", "0", "0", "1")
    predictions = objects("1", "1", "0", "0", "1", "0", "0", "1")
    scores = floats(0.9, 0.8, 0.3, 0.2, 0.6, 0.1, 0.4, 0.7)
    m = classification(labels, predictions, scores, "1")
    # tp=3 (rows 0, 1, 7), fp=1 (row 4), fn=1 (row 2), tn=3.
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["count"]) == (3, 1, 1, 3, 8)
    assert m["accuracy"] == 6 / 8
    assert m["precision"] == 3 / 4
    assert m["recall"] == 3 / 4
    assert m["f1"] == pytest.approx(0.75)
    # Positives score 0.9, 0.8, 0.3, 0.7; negatives 0.2, 0.6, 0.1, 0.4: of the 16 pairs
    # the positive wins all but 0.3 < 0.6 and 0.3 < 0.4.
    assert m["roc_auc"] == 14 / 16
    y = floats(1, 1, 1, 0, 0, 0, 0, 1)
    expected_log_loss = -np.mean(y * np.log(scores) + (1 - y) * np.log(1 - scores))
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    assert m["brier"] == pytest.approx(np.mean((scores - y) ** 2))


def test_roc_auc_known_value_and_ties() -> None:
    # The textbook example: 0.75.
    assert roc_auc(floats(0, 0, 1, 1), floats(0.1, 0.4, 0.35, 0.8)) == 0.75
    # Ties between a positive and a negative count half.
    assert roc_auc(floats(0, 1), floats(0.5, 0.5)) == 0.5
    assert roc_auc(floats(0, 1, 0, 1), floats(0.2, 0.2, 0.9, 0.9)) == 0.5
    assert roc_auc(floats(0, 1, 1), floats(0.3, 0.3, 0.8)) == 0.75
    # Perfect and reversed rankings.
    assert roc_auc(floats(0, 0, 1), floats(0.1, 0.2, 0.3)) == 1.0
    assert roc_auc(floats(1, 0, 0), floats(0.1, 0.2, 0.3)) == 0.0


def test_roc_auc_equals_pairwise_count_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(np.float64)
    scores = np.round(rng.random(300), 1)  # few distinct values: many ties
    pos, neg = scores[y == 1], scores[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, scores) == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)


def test_roc_auc_needs_both_classes() -> None:
    assert math.isnan(roc_auc(floats(1, 1), floats(0.2, 0.8)))
    m = classification(objects("1", "1"), objects("1", "0"), floats(0.2, 0.8), "1")
    assert math.isnan(m["roc_auc"])
    assert m["log_loss"] == pytest.approx(-(math.log(0.2) + math.log(0.8)) / 2)


def test_log_loss_clips_certain_wrong_scores() -> None:
    m = classification(objects("1", "0"), objects("0", "1"), floats(0.0, 1.0), "1")
    # Both scores are certain and wrong: each costs -log of the clip (1 - (1 - 1e-15) in floats).
    assert m["log_loss"] == pytest.approx(-(math.log(1e-15) + math.log(1 - (1 - 1e-15))) / 2)
    assert math.isfinite(m["log_loss"])


def test_ece_with_ten_equal_width_bins() -> None:
    # Bin [0.1, 0.2): scores 0.1, 0.1, outcome rate 0.5 -> gap 0.4 over 2 rows;
    # bin [0.9, 1.0]: scores 0.9, 1.0, outcome rate 1.0 -> gap |2 - 1.9| over 2 rows.
    labels = objects("0", "1", "1", "1")
    predictions = objects("0", "0", "1", "1")
    scores = floats(0.1, 0.1, 0.9, 1.0)
    m = classification(labels, predictions, scores, "1")
    assert m["ece"] == pytest.approx((abs(1 - 0.2) + abs(2 - 1.9)) / 4)


def test_ece_of_a_calibrated_model_is_small() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(50_000)
    labels = np.where(rng.random(50_000) < p, "1", "0").astype(object)
    m = classification(labels, np.where(p > 0.5, "1", "0").astype(object), p, "1")
    assert m["ece"] < 0.01
    assert m["brier"] == pytest.approx(1 / 6, abs=0.005)  # E[p(1-p)] for uniform p


def test_absent_scores_are_skipped() -> None:
    labels = objects("1", "0", "1", "0")
    predictions = objects("1", "0", "0", "0")
    with_nan = classification(labels, predictions, floats(0.9, 0.1, math.nan, math.nan), "1")
    kept = classification(labels[:2], predictions[:2], floats(0.9, 0.1), "1")
    for name in ("roc_auc", "log_loss", "brier", "ece"):
        assert with_nan[name] == kept[name]
    assert with_nan["accuracy"] == 0.75  # the label metrics use every pair
    all_nan = classification(labels, predictions, floats(*[math.nan] * 4), "1")
    assert all(math.isnan(all_nan[n]) for n in ("roc_auc", "log_loss", "brier", "ece"))


def test_no_scores_leave_score_metrics_nan() -> None:
    m = classification(objects("1", "0"), objects("1", "1"), None, "1")
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 1.0
    assert all(math.isnan(m[n]) for n in ("roc_auc", "log_loss", "brier", "ece"))


def test_multiclass_without_positive_has_accuracy_only() -> None:
    m = classification(objects("a", "b", "c", "a"), objects("a", "c", "c", "a"), None, None)
    assert m["accuracy"] == 0.75 and m["count"] == 4
    assert all(math.isnan(m[n]) for n in CLASSIFICATION_METRICS if n != "accuracy")


def test_multiclass_with_positive_is_one_against_the_rest() -> None:
    m = classification(objects("a", "b", "c", "a"), objects("a", "a", "c", "b"), None, "a")
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)


def test_undefined_ratios_are_nan() -> None:
    # No positive predicted: precision is 0/0; no positive label: recall is 0/0.
    m = classification(objects("0", "0"), objects("0", "0"), None, "1")
    assert m["accuracy"] == 1.0
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])


def test_labels_compare_as_strings() -> None:
    # JSON text form: the number 1 arrives as "1" and true as "true"; they are different classes.
    m = classification(objects("true", "1"), objects("true", "true"), None, "true")
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5


def test_empty_classification_gives_nans() -> None:
    m = classification(objects(), objects(), floats(), "1")
    assert m["count"] == 0
    assert all(math.isnan(m[n]) for n in CLASSIFICATION_METRICS)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        classification(objects("1", "0"), objects("1"), None, "1")
    with pytest.raises(ValueError, match="one length"):
        classification(objects("1", "0"), objects("1", "0"), floats(0.5), "1")
    with pytest.raises(ValueError, match="one length"):
        regression(floats(1.0), floats(1.0, 2.0))


# --- regression metrics ------------------------------------------------------------


def test_regression_metrics_match_hand_computation() -> None:
    labels = floats(1.0, 2.0, 3.0, 4.0)
    predictions = floats(2.0, 2.0, 2.0, 6.0)  # errors 1, 0, -1, 2
    m = regression(labels, predictions)
    assert m["mae"] == 1.0
    assert m["rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert m["mean_error"] == 0.5
    assert m["r2"] == pytest.approx(1 - 6 / 5)  # SS_res 6, SS_tot 5
    assert m["count"] == 4


def test_regression_edge_cases() -> None:
    assert regression(floats(1.0, 2.0), floats(1.0, 2.0))["r2"] == 1.0
    assert math.isnan(regression(floats(3.0, 3.0), floats(3.0, 4.0))["r2"])  # constant labels
    empty = regression(floats(), floats())
    assert empty["count"] == 0
    assert all(math.isnan(empty[n]) for n in REGRESSION_METRICS)


# --- the reference and the rule ----------------------------------------------------


def calibrated(n: int, rng: np.random.Generator, slope: float = 1.5) -> tuple[Any, Any, Any]:
    """A binary classifier whose scores are the true probability when ``slope`` is 1.5."""
    x = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-(-1.0 + 1.5 * x)))
    truth = 1 / (1 + np.exp(-(-1.0 + slope * x)))
    labels = np.where(rng.random(n) < truth, "1", "0").astype(object)
    return labels, np.where(score > 0.5, "1", "0").astype(object), score


def gaussian(n: int, rng: np.random.Generator, noise: float = 1.0, bias: float = 0.0) -> Any:
    x = rng.normal(0, 2, n)
    return x + rng.normal(bias, noise, n), x


@pytest.fixture(scope="module")
def classifier_reference() -> Reference:
    labels, predictions, scores = calibrated(20_000, np.random.default_rng(11))
    return reference(CLASSIFICATION, labels, predictions, scores, "1")


@pytest.fixture(scope="module")
def regressor_reference() -> Reference:
    labels, predictions = gaussian(20_000, np.random.default_rng(12))
    return reference(REGRESSION, labels, predictions, None, None)


def test_reference_holds_every_metric_of_its_task(
    classifier_reference: Reference, regressor_reference: Reference
) -> None:
    assert set(classifier_reference.values) == set(CLASSIFICATION_METRICS)
    assert set(regressor_reference.values) == set(REGRESSION_METRICS)
    assert all(math.isfinite(v) for v in classifier_reference.spread.values())
    assert all(s > 0 for s in regressor_reference.spread.values())
    # Accuracy's bootstrap spread at ``size`` pairs is the binomial one.
    p, size = classifier_reference.values["accuracy"], classifier_reference.size
    assert classifier_reference.spread["accuracy"] == pytest.approx(
        math.sqrt(p * (1 - p) / size), rel=0.2
    )


def test_reference_is_deterministic() -> None:
    labels, predictions = gaussian(3000, np.random.default_rng(1))
    first = reference(REGRESSION, labels, predictions, None, None)
    assert reference(REGRESSION, labels, predictions, None, None) == first


def test_reference_round_trips_through_json(classifier_reference: Reference) -> None:
    text = json.dumps(classifier_reference.to_dict(), allow_nan=False)
    assert Reference.from_dict(json.loads(text)) == classifier_reference


def test_reference_of_unmeasurable_metrics_round_trips_as_null() -> None:
    # Multi-class without scores: only accuracy can be measured.
    labels = np.array(["a", "b", "c"] * 100, dtype=object)
    ref = reference(CLASSIFICATION, labels, np.roll(labels, 1), None, None)
    data = ref.to_dict()
    assert data["metrics"]["roc_auc"] == {"value": None, "bias": None, "spread": None}
    back = Reference.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert back.values["accuracy"] == ref.values["accuracy"]
    assert math.isnan(back.values["roc_auc"])
    assert judge("roc_auc", back, 0.1, 1000) == (False, pytest.approx(math.nan, nan_ok=True))


def test_reference_of_empty_data_is_all_nan() -> None:
    ref = reference(REGRESSION, floats(), floats(), None, None)
    assert all(math.isnan(v) for v in ref.values.values())
    assert judge("mae", ref, 100.0, 1000)[0] is False


def test_reference_refuses_unknown_task() -> None:
    with pytest.raises(ValueError, match="task"):
        reference("ranking", floats(1.0), floats(1.0), None, None)


def reference_dict() -> dict[str, Any]:
    labels, predictions = gaussian(500, np.random.default_rng(2))
    return reference(REGRESSION, labels, predictions, None, None).to_dict()


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("task", "ranking", r"reference\.task"),
        ("size", 0, r"reference\.size"),
        ("size", 1.5, r"reference\.size"),
        ("size", True, r"reference\.size"),
        ("metrics.mae", ..., r"reference\.metrics: expected exactly"),
        ("metrics.extra", {"value": 1, "bias": 0, "spread": 1}, r"reference\.metrics: expected"),
        ("metrics.mae.bias", ..., r"reference\.metrics\.mae: expected"),
        ("metrics.mae.value", "1", r"reference\.metrics\.mae\.value"),
        ("metrics.rmse.spread", True, r"reference\.metrics\.rmse\.spread"),
        ("metrics.r2.value", float("inf"), r"reference\.metrics\.r2\.value"),
        ("extra", 1, r"reference: expected an object"),
    ],
)
def test_reference_from_dict_is_strict_and_names_the_key(
    path: str, value: Any, message: str
) -> None:
    data = set_path(reference_dict(), path, value)
    with pytest.raises(ValueError, match=message):
        Reference.from_dict(data, "performance.reference")


def test_reference_from_dict_refuses_non_objects() -> None:
    with pytest.raises(ValueError, match="expected an object"):
        Reference.from_dict([], "performance.reference")  # type: ignore[arg-type]


def test_higher_is_better_covers_every_metric() -> None:
    assert set(HIGHER_IS_BETTER) == set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
    assert HIGHER_IS_BETTER["accuracy"] and not HIGHER_IS_BETTER["mae"]
    assert HIGHER_IS_BETTER["mean_error"] is None  # bias either way


def test_threshold_points_at_worse(classifier_reference: Reference) -> None:
    ref = classifier_reference
    base = ref.values["accuracy"]
    worse, threshold = judge("accuracy", ref, base, 1000)
    assert not worse and threshold < base
    assert judge("accuracy", ref, threshold - 1e-9, 1000)[0]
    assert not judge("accuracy", ref, threshold + 1e-9, 1000)[0]
    worse, threshold = judge("log_loss", ref, ref.values["log_loss"], 1000)
    assert not worse and threshold > ref.values["log_loss"]
    assert judge("log_loss", ref, threshold + 1e-9, 1000)[0]


def test_margin_shrinks_with_window_size_and_grows_with_tolerance(
    classifier_reference: Reference,
) -> None:
    ref = classifier_reference
    thresholds = [judge("accuracy", ref, 1.0, n)[1] for n in (200, 1000, 5000)]
    assert thresholds[0] < thresholds[1] < thresholds[2] < ref.values["accuracy"]
    plain = judge("accuracy", ref, 1.0, 1000)[1]
    assert judge("accuracy", ref, 1.0, 1000, tolerance=0.02)[1] == pytest.approx(plain - 0.02)
    assert judge("accuracy", ref, 1.0, 1000, z=2.0)[1] > plain


def test_mean_error_is_worse_in_either_direction(regressor_reference: Reference) -> None:
    ref = regressor_reference
    base = ref.values["mean_error"]
    up, high = judge("mean_error", ref, base + 1.0, 1000)
    down, low = judge("mean_error", ref, base - 1.0, 1000)
    assert up and down
    assert low < base < high
    assert not judge("mean_error", ref, base, 1000)[0]


def test_nan_values_and_empty_windows_are_never_worse(regressor_reference: Reference) -> None:
    assert judge("mae", regressor_reference, math.nan, 1000)[0] is False
    assert judge("mae", regressor_reference, 1e9, 0)[0] is False
    assert judge("accuracy", regressor_reference, 0.0, 1000)[0] is False  # not in the reference


def test_min_count_is_the_documented_floor() -> None:
    assert perf.MIN_COUNT == 200
    assert perf.DEFAULT_Z >= 3.0


def test_null_windows_rarely_alarm_and_real_degradation_is_caught(
    classifier_reference: Reference, regressor_reference: Reference
) -> None:
    # 2,000 no-drift windows of MIN_COUNT pairs per task: well under 1% judged worse per
    # metric (the rule aims at 0.1%; the bound is loose so the test is not flaky).
    rng = np.random.default_rng(2024)
    windows, n = 2000, perf.MIN_COUNT
    alarms = dict.fromkeys(CLASSIFICATION_METRICS + REGRESSION_METRICS, 0)
    for _ in range(windows):
        values = classification(*calibrated(n, rng), "1")
        for name in CLASSIFICATION_METRICS:
            alarms[name] += judge(name, classifier_reference, values[name], n)[0]
        values = regression(*gaussian(n, rng))
        for name in REGRESSION_METRICS:
            alarms[name] += judge(name, regressor_reference, values[name], n)[0]
    assert all(count / windows < 0.01 for count in alarms.values()), alarms

    # A clear degradation in windows of 1,000 pairs is caught most of the time.
    caught = {"accuracy": 0, "roc_auc": 0, "mae": 0, "rmse": 0}
    for _ in range(100):
        values = classification(*calibrated(1000, rng, slope=0.5), "1")
        caught["accuracy"] += judge("accuracy", classifier_reference, values["accuracy"], 1000)[0]
        caught["roc_auc"] += judge("roc_auc", classifier_reference, values["roc_auc"], 1000)[0]
        values = regression(*gaussian(1000, rng, noise=1.3))
        caught["mae"] += judge("mae", regressor_reference, values["mae"], 1000)[0]
        caught["rmse"] += judge("rmse", regressor_reference, values["rmse"], 1000)[0]
    assert all(count >= 90 for count in caught.values()), caught
