import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from driftstream.replay.incidents import (
    EventTimes,
    Incident,
    IncidentError,
    check_models,
    load_incidents,
    pareto,
    score,
)

# 2026-01-01T10:00:00Z
T0 = 1767261600.0


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- loading


def test_loads_yaml_with_every_kind_of_time(tmp_path):
    path = write(
        tmp_path,
        "incidents.yaml",
        """
- model_id: fraud
  start: "2026-01-01T10:00:00Z"
  end: "2026-01-01T12:30:00+02:00"
  features: [amount, age]
  note: card testing
- model_id: fraud
  start: "2026-01-01T10:00:00.5"
- model_id: churn
  start: 1767261600
  end: 1767265200.25
- model_id: churn
  start: 2026-01-01T12:00:00+02:00
  end: 2026-01-01 11:00:00
- model_id: churn
  start: "2026-01-01t10:00:00z"
  end: null
""",
    )
    incidents = load_incidents(path)
    assert incidents == [
        Incident("fraud", T0, T0 + 1800.0, ("amount", "age"), "card testing"),
        Incident("fraud", T0 + 0.5, None, None, None),
        Incident("churn", T0, T0 + 3600.25, None, None),
        # A YAML datetime with an offset, and a naive one (UTC).
        Incident("churn", T0, T0 + 3600.0, None, None),
        # Lower-case t and z are RFC 3339 too.
        Incident("churn", T0, None, None, None),
    ]


def test_loads_json_as_json_under_an_incidents_key(tmp_path):
    # Tab indentation and 1.7e9 are valid JSON that YAML 1.1 would misread.
    text = (
        '{\n\t"incidents": [\n\t\t{"model_id": "fraud", "start": 1.7e9, "end": 1.7000036e9}\n\t]\n}'
    )
    path = write(tmp_path, "incidents.json", text)
    assert load_incidents(path) == [Incident("fraud", 1.7e9, 1.7000036e9, None, None)]


def test_loads_yaml_under_an_incidents_key_with_the_yml_suffix(tmp_path):
    path = write(tmp_path, "known.yml", "incidents:\n  - {model_id: m, start: 10, end: 20}\n")
    assert load_incidents(str(path)) == [Incident("m", 10.0, 20.0, None, None)]


def test_an_empty_list_is_no_incidents(tmp_path):
    assert load_incidents(write(tmp_path, "none.json", "[]")) == []


BAD_ITEMS = [
    ({"model_id": "m", "start": 1, "owner": "x"}, "incident 2: unknown key 'owner'"),
    ({"start": 1}, "incident 2: 'model_id' is missing"),
    ({"model_id": "m"}, "incident 2: 'start' is missing"),
    ({"model_id": "m", "start": None}, "incident 2: 'start' is missing"),
    ({"model_id": 7, "start": 1}, "incident 2: 'model_id' must be a non-empty string"),
    ({"model_id": "", "start": 1}, "incident 2: 'model_id' must be a non-empty string"),
    (
        {"model_id": "m", "start": "yesterday"},
        "incident 2: 'start' is not an RFC 3339 time or epoch seconds: 'yesterday'",
    ),
    (
        {"model_id": "m", "start": "2026-01-01T10:00Z"},
        "incident 2: 'start' is not an RFC 3339 time or epoch seconds",
    ),
    (
        {"model_id": "m", "start": "2026-02-30T10:00:00Z"},
        "incident 2: 'start' is not an RFC 3339 time or epoch seconds",
    ),
    ({"model_id": "m", "start": 1, "end": "soon"}, "incident 2: 'end' is not an RFC 3339"),
    ({"model_id": "m", "start": True}, "incident 2: 'start' is not an RFC 3339"),
    ({"model_id": "m", "start": [1]}, "incident 2: 'start' is not an RFC 3339"),
    ({"model_id": "m", "start": -5}, "incident 2: 'start' -5 is outside 1970-01-01"),
    (
        {"model_id": "m", "start": 1767261600000},
        "incident 2: 'start' 1767261600000 is outside 1970-01-01..9999-12-31 (milliseconds?",
    ),
    ({"model_id": "m", "start": 20, "end": 10}, "incident 2: 'end' 1970-01-01T00:00:10Z is not"),
    ({"model_id": "m", "start": 20, "end": 20}, "incident 2: 'end' 1970-01-01T00:00:20Z is not"),
    ({"model_id": "m", "start": 1, "features": []}, "incident 2: 'features' is empty"),
    ({"model_id": "m", "start": 1, "features": "amount"}, "incident 2: 'features' must be a list"),
    ({"model_id": "m", "start": 1, "features": ["a", 3]}, "incident 2: 'features' must hold"),
    ({"model_id": "m", "start": 1, "features": ["a", ""]}, "incident 2: 'features' must hold"),
    ({"model_id": "m", "start": 1, "features": ["a", "a"]}, "incident 2: 'features' lists 'a'"),
    ({"model_id": "m", "start": 1, "note": 5}, "incident 2: 'note' must be text"),
    ("fraud", "incident 2: expected a mapping with model_id and start, found str"),
    ({"model_id": "ok", "start": 0}, "incident 2 repeats incident 1"),
]


@pytest.mark.parametrize(("item", "message"), BAD_ITEMS)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_bad_incident_is_refused_naming_the_file_its_number_and_key(
    tmp_path, item, message, suffix
):
    first = {"model_id": "ok", "start": 0}
    path = write(tmp_path, "incidents" + suffix, json.dumps([first, item]))
    with pytest.raises(IncidentError) as caught:
        load_incidents(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_the_documented_message_for_a_bad_start(tmp_path):
    path = write(
        tmp_path, "incidents.yaml", "- {model_id: m, start: 0}\n- {model_id: m, start: yesterday}\n"
    )
    with pytest.raises(IncidentError) as caught:
        load_incidents(path)
    assert str(caught.value) == (
        f"{path}: incident 2: 'start' is not an RFC 3339 time or epoch seconds: 'yesterday'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {model_id: m, start: 2026-01-01}\n", "'start' is a date without a time of day"),
        ("- {model_id: m, start: 1.7e9}\n", "(YAML read this number as text"),
        ("- {model_id: m, start: 0, end: 2026-01-01T10:00:00Z, extra: 1}\n", "unknown key 'extra'"),
    ],
)
def test_yaml_specific_mistakes_get_a_hint(tmp_path, text, message):
    path = write(tmp_path, "incidents.yaml", text)
    with pytest.raises(IncidentError, match="incident 1: ") as caught:
        load_incidents(path)
    assert message in str(caught.value)


def test_features_are_kept_in_order_and_a_repeat_with_reordered_features_is_refused(tmp_path):
    items = [
        {"model_id": "m", "start": 0, "features": ["b", "a"]},
        {"model_id": "m", "start": 0, "features": ["a", "b"], "note": "again"},
    ]
    path = write(tmp_path, "incidents.json", json.dumps(items[:1]))
    assert load_incidents(path)[0].features == ("b", "a")
    path = write(tmp_path, "incidents.json", json.dumps(items))
    with pytest.raises(IncidentError, match="incident 2 repeats incident 1"):
        load_incidents(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("incidents.txt", "[]", "unknown file type '.txt'; use .yaml, .yml or .json"),
        ("incidents.yaml", "", "expected a list of incidents, found nothing"),
        ("incidents.yaml", "model_id: m\n", "a mapping must have the single key 'incidents'"),
        ("incidents.json", '{"incidents": [], "x": 1}', "the single key 'incidents' (found"),
        ("incidents.json", '"m"', "expected a list of incidents, found str"),
        ("incidents.json", "[1,", "not valid JSON"),
        ("incidents.yaml", "- [", "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(IncidentError) as caught:
        load_incidents(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(IncidentError) as caught:
        load_incidents(path)
    assert str(caught.value).startswith(f"{path}: cannot read: No such file")


def test_check_models_names_an_incident_of_a_model_the_config_lacks():
    incidents = [Incident("fraud", 0.0, None, None, None), Incident("chrun", 5.0, None, None, None)]
    check_models(incidents, {"fraud": 1, "chrun": 2})  # a mapping of models will do
    with pytest.raises(IncidentError) as caught:
        check_models(incidents, {"fraud", "churn"}, source="known.yaml")
    assert str(caught.value) == (
        "known.yaml: incident 2: model 'chrun' is not in the config (models: churn, fraud)"
    )


# ----------------------------------------------------------------------------- event times


def batches(values: np.ndarray, rng: np.random.Generator, parts: int) -> list[np.ndarray]:
    """``values`` shuffled and cut into batches that come in a random order."""
    return np.array_split(rng.permutation(values), parts)


def test_event_times_are_exact_below_the_cap_whatever_the_batch_order():
    rng = np.random.default_rng(7)
    incidents = [
        Incident("m", 100.0, 200.0, None, None),
        Incident("m", 150.0, None, None, None),
        Incident("other", 0.0, None, None, None),
    ]
    times = EventTimes(incidents, cap=1000)
    ts = np.round(rng.uniform(0.0, 300.0, 600), 1)  # rounded: ties at the probed times
    for batch in batches(ts, rng, 13):
        times.add("m", batch)
    for t in [100.0, 100.1, 150.0, 180.5, 200.0, 250.0, 299.9]:
        assert times.events_before(0, t) == np.sum((ts >= 100.0) & (ts < min(t, 200.0)))
        assert times.events_before(1, t) == np.sum((ts >= 150.0) & (ts < t))
    assert times.events_before(2, 300.0) == 0
    assert times.in_range(0) == np.sum((ts >= 100.0) & (ts < 200.0))
    assert times.in_range(1) == np.sum(ts >= 150.0)
    assert not times.over_cap(0)
    assert times.events("m") == 600
    assert times.events("other") == 0
    assert times.span("m") == (ts.min(), ts.max())
    assert times.span("other") is None


def test_an_incident_keeps_its_start_and_drops_its_end():
    times = EventTimes([Incident("m", 10.0, 20.0, None, None)])
    times.add("m", np.array([20.0, 10.0, 19.5, 9.5]))
    assert times.in_range(0) == 2
    assert times.events_before(0, 20.0) == 2
    assert times.events_before(0, 19.5) == 1
    assert times.events_before(0, 10.0) == 0


def test_past_the_cap_event_times_are_bounded_exact_as_far_as_kept_and_unknown_beyond():
    rng = np.random.default_rng(11)
    cap = 100
    times = EventTimes([Incident("m", 0.0, None, None, None)], cap=cap)
    ts = rng.uniform(0.0, 1000.0, 2000)
    largest_batch = 0
    for batch in batches(ts, rng, 40):
        times.add("m", batch)
        largest_batch = max(largest_batch, batch.size)
        assert times.held(0) <= cap + cap // 2 + largest_batch
    kept_up_to = np.sort(ts)[cap - 1]
    for t in [0.0, kept_up_to / 2, kept_up_to]:
        assert times.events_before(0, t) == np.sum(ts < t)
    assert times.events_before(0, np.nextafter(kept_up_to, np.inf)) is None
    assert times.events_before(0, 999.0) is None
    assert times.held(0) == cap
    assert times.in_range(0) == 2000
    assert times.over_cap(0)
    assert times.events("m") == 2000


def test_in_time_order_the_cap_keeps_the_first_events():
    times = EventTimes([Incident("m", 0.0, None, None, None)], cap=10)
    for start in range(0, 100, 7):
        times.add("m", np.arange(start, start + 7, dtype=np.float64))
    assert times.events_before(0, 9.0) == 9
    assert times.events_before(0, 9.5) is None
    assert times.held(0) == 10


def test_span_sums_over_models_with_events():
    times = EventTimes([])
    times.add("a", np.array([50.0, 10.0]))
    times.add("a", np.array([30.0]))
    times.add("b", np.array([1000.0]))
    times.add("c", np.array([], dtype=np.float64))
    assert times.span_seconds() == 40.0
    assert times.events("a") == 3


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError, match="cap must be at least 1"):
        EventTimes([], cap=0)


# ----------------------------------------------------------------------------- scoring

FRAUD = np.arange(0.0, 10_000.0, 10.0)  # 1000 events, one every 10 s
CHURN = np.arange(2500.0, 4500.0, 5.0)  # 400 events, one every 5 s
DAYS = (9990.0 + 1995.0) / 86400.0  # each model's last minus first event time

INCIDENTS = [
    Incident("fraud", 1000.0, 2000.0, ("amount",), "amount spike"),
    Incident("churn", 3000.0, 4000.0, None, None),
    Incident("fraud", 6000.0, 7000.0, None, "nobody noticed"),
]


def alert(n, kind, model_id, feature, detector, statistic, event_time, **extra):
    return {
        "alert_id": f"{n:032x}",
        "kind": kind,
        "severity": "warning",
        "model_id": model_id,
        "feature": feature,
        "detector": detector,
        "statistic": statistic,
        "event_time": event_time,
        **extra,
    }


ALERTS = [
    alert(2, "drift", "fraud", "amount", "page_hinkley", "mean_shift", 1400.0),
    alert(1, "drift", "fraud", "amount", "window", "psi", 1250.0),
    alert(1, "drift", "fraud", "amount", "window", "psi", 1250.0),  # re-sent: the same id
    alert(3, "drift", "fraud", "age", "window", "psi", 1500.0),  # a feature not listed
    alert(4, "resolved", "fraud", "amount", "window", "psi", 1600.0),
    alert(5, "drift", "churn", "__prediction__", "adwin", "mean_shift", 3100.0),
    alert(6, "drift", "fraud", "amount", "window", "psi", 500.0),  # before any incident
    alert(7, "quality", "fraud", "__routing__", "routing", "partition_split", 9000.0),
    alert(8, "performance", "fraud", "__performance__", "window", "accuracy", 1800.0),
    alert(9, "performance", "churn", "__performance__", "ddm", "error_rate", 4400.0),
    alert(10, "resolved", "churn", "__prediction__", "adwin", "mean_shift", 8000.0),
]


def event_times(cap: int = 10_000_000) -> EventTimes:
    times = EventTimes(INCIDENTS, cap=cap)
    rng = np.random.default_rng(3)
    for batch in batches(FRAUD, rng, 9):
        times.add("fraud", batch)
    for batch in batches(CHURN, rng, 4):
        times.add("churn", batch)
    return times


def test_score_of_drift_alarms():
    card = score(ALERTS, INCIDENTS, event_times()).to_dict()
    assert card["incidents"] == 3
    assert card["detected"] == 2
    assert card["missed"] == 1
    # Delays: 250 s / 25 events (fraud) and 100 s / 20 events (churn).
    assert card["delay_seconds_median"] == 175.0
    assert card["delay_seconds_p90"] == pytest.approx(100.0 + 0.9 * 150.0)
    assert card["delay_events_median"] == 22.5
    assert card["delay_events_p90"] == pytest.approx(20.0 + 0.9 * 5.0)
    # The age alarm, the one before the incident and the routing alarm.
    assert card["false_alarms"] == 3
    assert card["false_alarms_per_day"] == pytest.approx(3 / DAYS)

    fraud, churn, missed = card["per_incident"]
    assert fraud == {
        "model_id": "fraud",
        "start": 1000.0,
        "end": 2000.0,
        "features": ["amount"],
        "note": "amount spike",
        "detected": True,
        "delay_seconds": 250.0,
        "delay_events": 25,
        "events": 100,
        "events_over_cap": False,
        "first_alert": {
            "kind": "drift",
            "feature": "amount",
            "detector": "window",
            "statistic": "psi",
            "event_time": 1250.0,
            "alert_id": f"{1:032x}",
        },
        "by_detector": {
            "page_hinkley|mean_shift": {"delay_seconds": 400.0, "delay_events": 40},
            "window|psi": {"delay_seconds": 250.0, "delay_events": 25},
        },
    }
    assert churn["delay_seconds"] == 100.0
    assert churn["delay_events"] == 20
    assert churn["first_alert"]["detector"] == "adwin"
    assert churn["by_detector"] == {
        "adwin|mean_shift": {"delay_seconds": 100.0, "delay_events": 20}
    }
    assert missed["detected"] is False
    assert missed["delay_seconds"] is None
    assert missed["delay_events"] is None
    assert missed["first_alert"] is None
    assert missed["by_detector"] == {}
    assert missed["note"] == "nobody noticed"


def test_performance_alarms_are_scored_separately_and_ignore_the_features_list():
    card = score(ALERTS, INCIDENTS, event_times()).to_dict()["performance"]
    assert "performance" not in card
    assert (card["incidents"], card["detected"], card["missed"]) == (3, 1, 2)
    assert card["delay_seconds_median"] == card["delay_seconds_p90"] == 800.0
    assert card["delay_events_median"] == card["delay_events_p90"] == 80.0
    assert card["false_alarms"] == 1  # the churn one after its incident
    assert card["false_alarms_per_day"] == pytest.approx(1 / DAYS)
    fraud = card["per_incident"][0]
    assert fraud["first_alert"]["statistic"] == "accuracy"
    assert fraud["by_detector"] == {"window|accuracy": {"delay_seconds": 800.0, "delay_events": 80}}


def test_resolved_alerts_change_nothing():
    resolved_only = [a for a in ALERTS if a["kind"] == "resolved"]
    card = score(resolved_only, INCIDENTS, event_times()).to_dict()
    assert card["detected"] == card["false_alarms"] == 0
    assert card["performance"]["false_alarms"] == 0
    without = [a for a in ALERTS if a["kind"] != "resolved"]
    assert score(without, INCIDENTS, event_times()) == score(ALERTS, INCIDENTS, event_times())


def test_the_score_is_json_data():
    card = score(ALERTS, INCIDENTS, event_times()).to_dict()
    assert orjson.loads(orjson.dumps(card)) == card


def test_an_alarm_at_either_end_detects_and_may_detect_overlapping_incidents():
    incidents = [Incident("m", 100.0, 200.0, None, None), Incident("m", 200.0, None, None, None)]
    times = EventTimes(incidents)
    times.add("m", np.arange(0.0, 400.0))
    alerts = [
        alert(1, "anomaly", "m", "x", "window", "psi", 200.0),
        alert(2, "drift", "m", "x", "window", "psi", 100.0),
    ]
    first, second = score(alerts, incidents, times).drift.per_incident
    assert first.first is not None and first.first.delay_seconds == 0.0
    assert first.first.delay_events == 0
    assert second.first is not None and second.first.delay_seconds == 0.0
    assert first.by_detector["window|psi"].alert_id == f"{2:032x}"


def test_an_alarm_without_an_event_time_is_a_false_alarm():
    incidents = [Incident("m", 0.0, None, None, None)]
    card = score(
        [alert(1, "drift", "m", "x", "adwin", "mean_shift", None)], incidents, EventTimes(incidents)
    )
    assert card.drift.false_alarms == 1
    assert card.drift.detected == 0


def test_false_alarms_per_day_counts_at_least_an_hour_of_data():
    incidents = [Incident("m", 0.0, 10.0, None, None)]
    times = EventTimes(incidents)
    times.add("m", np.array([0.0, 60.0]))
    card = score([alert(1, "drift", "m", "x", "window", "psi", 30.0)], incidents, times)
    assert card.drift.false_alarms == 1
    assert card.drift.false_alarms_per_day == 24.0
    assert score([], incidents, EventTimes(incidents)).drift.false_alarms_per_day == 0.0


def test_without_detections_the_summary_delays_are_none():
    card = score([], INCIDENTS, event_times()).to_dict()
    assert card["missed"] == 3
    for key in ("delay_seconds_median", "delay_seconds_p90", "delay_events_median"):
        assert card[key] is None
        assert card["performance"][key] is None


def test_a_delay_past_the_cap_is_unknown_and_flagged():
    card = score(ALERTS, INCIDENTS, event_times(cap=22)).to_dict()
    fraud, churn, _ = card["per_incident"]
    assert (fraud["delay_events"], fraud["events_over_cap"]) == (None, True)
    assert fraud["by_detector"]["window|psi"]["delay_events"] is None
    assert fraud["delay_seconds"] == 250.0
    assert (churn["delay_events"], churn["events_over_cap"]) == (20, True)
    # The unknown delay is left out of the summary, not counted as zero.
    assert card["delay_events_median"] == card["delay_events_p90"] == 20.0
    assert card["delay_seconds_median"] == 175.0


@pytest.mark.parametrize(
    ("change", "message"),
    [({"kind": "comparison"}, "alert at index 0: unknown kind 'comparison'")],
)
def test_an_unknown_alert_kind_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        score([{**ALERTS[0], **change}], INCIDENTS, event_times())


def test_event_times_of_other_incidents_are_refused():
    with pytest.raises(ValueError, match="recorded for other incidents"):
        score(ALERTS, INCIDENTS[:2], event_times())


def test_an_alert_missing_a_field_is_refused():
    broken = {k: v for k, v in ALERTS[0].items() if k != "detector"}
    with pytest.raises(ValueError, match="alert at index 1: missing detector"):
        score([ALERTS[1], broken], INCIDENTS, event_times())


# ----------------------------------------------------------------------------- pareto


def test_pareto_front():
    assert pareto([]) == []
    assert pareto([(10.0, 1.0)]) == [True]
    # Better on one, worse on the other: both on the front.
    assert pareto([(10.0, 1.0), (5.0, 2.0)]) == [True, True]
    # As good on one and better on the other dominates.
    assert pareto([(10.0, 1.0), (10.0, 0.5), (12.0, 0.5)]) == [False, True, False]
    # Ties dominate nobody.
    assert pareto([(10.0, 1.0), (10.0, 1.0), (11.0, 1.0)]) == [True, True, False]


def test_pareto_counts_a_missing_delay_as_worse_than_any():
    assert pareto([(None, 1.0), (1e9, 1.0)]) == [False, True]
    assert pareto([(None, 0.0), (1e9, 1.0)]) == [True, True]
    assert pareto([(None, 0.0), (None, 1.0), (None, 0.0)]) == [True, False, True]
