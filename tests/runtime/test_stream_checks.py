"""The unit's stream checks on decoded batches: what each stream is fed, what a finding cites."""

import math
from dataclasses import replace

import numpy as np
import orjson
import pytest

from driftstream.contract import REASONS
from driftstream.core.baseline import build_profile
from driftstream.core.dead_letter_rate import DeadLetterRate, DeadLetterSettings
from driftstream.core.freshness import FreshnessSettings
from driftstream.runtime.decode import Decoder, ModelColumns, Record
from driftstream.runtime.models import ModelSpec
from driftstream.runtime.stream_checks import Freshness, judge, streams

ROLES = {"preds": "predictions", "labs": "labels"}
PROFILE = build_profile({"x": np.linspace(0.0, 1.0, 100)}, model_id="a", created_at=0.0)
RATE = DeadLetterSettings(reasons=REASONS, window=10)


def spec(model_id, **options):
    options = {"freshness": FreshnessSettings(), "dead_letters": RATE, **options}
    return ModelSpec(model_id, replace(PROFILE, model_id=model_id), {}, **options)


MODELS = {"a": spec("a"), "b": spec("b"), "off": spec("off", freshness=None, dead_letters=None)}
COLUMNS = ModelColumns.from_baseline(PROFILE)
DECODER = Decoder(dict.fromkeys(MODELS, COLUMNS), ROLES)


def record(offset, model_id, ts, x=0.5, topic="preds", key=None):
    event = {"event_id": str(offset), "model_id": model_id, "model_version": "v", "ts": ts}
    if topic == "preds":
        event.update(features={"x": x}, prediction=1)
    else:
        event["label"] = "yes"
    key = model_id.encode() if key is None else key
    return Record(topic, 0, offset, key, orjson.dumps(event))


def test_only_streams_of_known_models_with_the_check_on_are_fed():
    records = [
        record(0, "a", 1.0),
        record(1, "a", 2.0, x="wrong"),
        record(2, "nobody", 3.0),
        record(3, "off", 4.0, x="wrong"),
        record(4, "b", 5.0, key=b"a"),  # key_mismatch: b's
        record(0, "a", 6.0, topic="labs"),  # labels_disabled: a has no labels section
    ]
    found = streams(DECODER.decode(records), ROLES, MODELS)
    assert {name: (len(s.batches), [d.reason for d in s.letters]) for name, s in found.items()} == {
        "dead_letters:predictions:a": (1, ["wrong_type"]),
        "dead_letters:predictions:b": (0, ["key_mismatch"]),
    }


def test_a_window_closed_by_a_dead_letter_cites_it_and_batch_cuts_change_nothing():
    values = ["bad" if n in (3, 5, 8, 9) else 0.5 for n in range(30)]  # 40% > 32% of the bound
    records = [record(n, "a", float(n), x=x) for n, x in enumerate(values)]
    cited = []
    rate = DeadLetterRate(RATE)
    for part in (records[:7], records[7:23], records[23:]):
        found = streams(DECODER.decode(part), ROLES, MODELS)
        cited += judge(found["dead_letters:predictions:a"], rate)
    whole = DeadLetterRate(RATE)
    at_once = judge(
        streams(DECODER.decode(records), ROLES, MODELS)["dead_letters:predictions:a"], whole
    )
    assert [(c.finding.kind, c.offset) for c in cited] == [("quality", 9), ("resolved", 29)]
    seen = [(c.finding.kind, c.finding.value, c.finding.details, c.offset) for c in cited]
    assert [(c.finding.kind, c.finding.value, c.finding.details, c.offset) for c in at_once] == seen
    assert math.isnan(cited[0].finding.event_time)  # a refused event has no usable time
    assert cited[1].finding.event_time == 29.0
    assert cited[0].finding.details == {"reason": "wrong_type", "count": 4}
    assert whole.to_state() == rate.to_state()


def test_models_with_other_limits_share_the_watermark_and_one_state():
    models = {
        "a": spec("a", freshness=FreshnessSettings(max_silence_seconds=10.0)),
        "b": spec("b", freshness=FreshnessSettings(max_silence_seconds=100.0)),
        "c": spec("c", freshness=FreshnessSettings(max_silence_seconds=10.0)),
    }
    decoder = Decoder(dict.fromkeys(models, COLUMNS), ROLES)
    freshness = Freshness(models)
    assert len(freshness.watches) == 2
    first = [record(0, "a", 0.0), record(1, "b", 1.0), record(2, "c", 2.0)]
    assert [c.finding.statistic for c in freshness.observe(decoder.decode(first).batches)] == []
    later = [record(n, "c", 2.0 + n * 5) for n in range(3, 25)]
    cited = freshness.observe(decoder.decode(later).batches)
    # Each at the first event past its own limit: 17 > 0 + 10, 102 > 1 + 100.
    assert [(c.finding.model_id, c.offset) for c in cited] == [("a", 3), ("b", 20)]
    assert [c.finding.event_time for c in cited] == [17.0, 102.0]
    state = orjson.loads(orjson.dumps(freshness.to_state()))
    assert state["watermark"] == 122.0 and sorted(state["models"]) == ["a", "b", "c"]
    assert freshness.lags()["b"] == (121.0, 122.0)

    again = Freshness(models, state)
    assert again.to_state() == freshness.to_state()
    back = again.observe(decoder.decode([record(25, "a", 123.0), record(26, "b", 124.0)]).batches)
    assert [(c.finding.model_id, c.offset) for c in back] == [("a", 25), ("b", 26)]
    assert {c.finding.kind for c in back} == {"resolved"}
    fewer = {"a": models["a"], "b": replace(models["b"], freshness=None), "c": models["c"]}
    assert sorted(Freshness(fewer, state).to_state()["models"]) == ["a", "c"]


def test_a_damaged_freshness_state_is_refused_naming_the_key():
    bad = {"kind": "freshness", "version": 1, "watermark": 5.0, "models": {"a": {"latest": 9.0}}}
    with pytest.raises(ValueError, match=r"models\.a"):
        Freshness(MODELS, bad)
