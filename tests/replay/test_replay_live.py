"""A replay raises the alerts the live worker raised: from the topics, and from an export."""

from __future__ import annotations

import pytest
from pipeline import (
    LABELS,
    alert_ids,
    events,
    first_difference,
    label_events,
    produce,
    read_topic,
    run_in_thread,
    snapshot,
    write_config,
)

from driftstream.cli import main
from driftstream.replay.run import ReplayOptions, replay

KEY = b"fraud-detector"

pytestmark = pytest.mark.integration


@pytest.fixture
def live(kafka_bootstrap, redis_url, unique, tmp_path):
    """A live worker's run over drifted predictions and their labels, on two partitions."""
    path, config = write_config(
        tmp_path, kafka_bootstrap, redis_url, unique, batch_size=700, labels=LABELS
    )
    labels = label_events(12_000, seed=8, concept_from=7_000)
    produce(kafka_bootstrap, config.kafka.topics.predictions, events(8_000, 4_000, 8), KEY)
    produce(kafka_bootstrap, config.kafka.topics.labels, labels, KEY)
    run_in_thread(config, 12_000 + len(labels))
    ids = alert_ids(read_topic(kafka_bootstrap, config.kafka.topics.alerts, 1))
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    return path, config, ids, state


def memory_snapshot(run):
    import orjson

    found = {}
    for partition, store in sorted(run.stores.items()):
        data = store.snapshot()
        if not data["offsets"]:
            continue
        found[partition] = {
            "offsets": data["offsets"],
            "states": {name: orjson.loads(blob) for name, blob in data["states"].items()},
            "join": data["join"],
        }
    return found


def test_replaying_the_topics_gives_the_live_alert_ids_and_state(live, tmp_path):
    path, _, live_ids, live_state = live
    kinds = {"drift", "performance"}
    outcome = replay(ReplayOptions(config=path, out=tmp_path / "out", quiet=True))
    run = outcome.runs[0]
    import orjson

    alerts = [orjson.loads(a) for a in run.alerts()]
    assert {a["kind"] for a in alerts} >= kinds
    assert {a["alert_id"] for a in alerts} == live_ids
    # The stores in memory end where Redis ended: offsets, monitor and join state.
    replayed = memory_snapshot(run)
    live_state = {p: unit for p, unit in live_state.items() if unit["offsets"]}
    assert replayed == live_state, first_difference(replayed, live_state)
    assert outcome.summary["input"]["kind"] == "topics"
    assert outcome.summary["input"]["records"] == sum(
        sum(unit["offsets"].values()) for unit in live_state.values()
    )


def test_an_export_of_the_topics_replays_to_the_same_alert_ids(live, tmp_path, capsys):
    path, _, live_ids, _ = live
    export = tmp_path / "export.jsonl.gz"
    assert main(["export", "--config", str(path), "--out", str(export)]) == 0
    assert "wrote" in capsys.readouterr().out
    out = tmp_path / "from-file"
    assert main(["replay", "--config", str(path), "--data", str(export), "--out", str(out)]) == 0
    import orjson

    replayed = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert {a["alert_id"] for a in replayed} == live_ids
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["input"]["kind"] == "files"
    assert summary["bad_lines"]["count"] == 0


def test_a_range_by_offsets_replays_only_that_part(live, tmp_path):
    path, config, _, _ = live
    topic = config.kafka.topics.predictions
    out = tmp_path / "part"
    options = ReplayOptions(
        config=path, out=out, start=[f"{topic}:0:100", f"{topic}:1:100"], quiet=True
    )
    outcome = replay(options)
    ranges = {
        (r["topic"], r["partition"]): (r["from"], r["to"])
        for r in outcome.summary["input"]["ranges"]
    }
    assert all(start == 100 for (t, _), (start, _) in ranges.items() if t == topic)
    assert outcome.summary["input"]["records"] == sum(end - start for start, end in ranges.values())


def test_a_bad_or_empty_range_says_so_and_exits_2(live, tmp_path, capsys):
    path, _, _, _ = live
    base = ["replay", "--config", str(path), "--out", str(tmp_path / "x")]
    assert main([*base, "--from", "yesterday"]) == 2
    assert "RFC 3339" in capsys.readouterr().err
    assert main([*base, "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"]) == 2
    assert "is not after" in capsys.readouterr().err
    assert main([*base, "--from", "2099-01-01T00:00:00Z"]) == 2
    assert "holds no records" in capsys.readouterr().err
