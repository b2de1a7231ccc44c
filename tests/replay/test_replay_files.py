"""Replays of file exports: incidents scored, sweeps, bad input; no broker or Redis needed."""

from __future__ import annotations

import gzip

import orjson
import pyarrow.parquet as pq
import pytest
import yaml

from driftstream.cli import main
from driftstream.core.baseline import build_profile
from driftstream.replay.run import ReplayOptions, replay
from driftstream.synthetic import feature_rows, frame

MODEL = "fraud-detector"
START = 1_767_225_600.0
STEP = 0.01  # seconds of event time between predictions
# Two known changes: amount moves up for a while, later the device mix tilts for good.
PHASES = (
    (0, 20_000, ()),
    (20_000, 30_000, ("amount",)),
    (30_000, 42_000, ()),
    (42_000, 60_000, ("device",)),
)


def ts(index: int) -> float:
    return START + index * STEP


def event_lines() -> list[bytes]:
    lines = []
    for number, (first, last, drift) in enumerate(PHASES):
        data = frame(last - first, seed=50 + number, drift=drift)
        rows = zip(
            feature_rows(data), data["prediction"].tolist(), data["score"].tolist(), strict=True
        )
        for index, (features, prediction, score) in enumerate(rows, first):
            event = {
                "event_id": f"e{index}",
                "model_id": MODEL,
                "model_version": "v1",
                "ts": ts(index),
                "features": features,
                "prediction": prediction,
                "score": score,
            }
            lines.append(orjson.dumps(event))
    return lines


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    profile = build_profile(
        frame(20_000, seed=1), model_id=MODEL, prediction="prediction", score="score"
    )
    (root / "baseline.json").write_bytes(profile.to_json())
    config = {
        "models": {MODEL: {"baseline": "baseline.json", "window": {"size": 1000}}},
        "kafka": {"partitions": 1, "batch_size": 5000},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    lines = event_lines()
    lines.insert(100, b'{"event_id": "broken", "model_id": ')  # not JSON: a dead letter
    lines.insert(200, b'{"kafka":{"topic":"x"}, "event":')  # a broken export line
    with gzip.open(root / "events.jsonl.gz", "wb") as out:
        out.write(b"\n".join(lines) + b"\n")
    incidents = [
        {"model_id": MODEL, "start": ts(20_000), "end": ts(30_000) + 30, "note": "amount up"},
        {"model_id": MODEL, "start": "2026-01-01T00:07:00Z", "features": ["device"]},
    ]
    (root / "incidents.yaml").write_text(yaml.safe_dump(incidents))
    return root


def run_cli(workspace, out, *extra):
    args = [
        "replay",
        "--config",
        str(workspace / "config.yaml"),
        "--data",
        str(workspace / "events.jsonl.gz"),
        "--incidents",
        str(workspace / "incidents.yaml"),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    return main(args)


def test_a_sweep_scores_both_incidents_with_their_delays_and_no_misses(workspace, tmp_path):
    out = tmp_path / "sweep"
    sweep = f"models.{MODEL}.detectors.page_hinkley.threshold=25,100"
    assert run_cli(workspace, out, "--set", sweep) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert [s["name"] for s in summary["settings"]] == [
        f"{sweep.split('=')[0]}=25",
        f"{sweep.split('=')[0]}=100",
    ]
    for setting in summary["settings"]:
        card = setting["score"]
        assert card["incidents"] == 2
        assert card["missed"] == 0
        assert card["detected"] == 2
        assert 0 <= card["delay_seconds_median"] < 30
        assert card["delay_events_median"] is not None
        assert (out / setting["output"] / "alerts.jsonl").exists()
    assert any(s["pareto"] for s in summary["settings"])
    per_incident = summary["incidents"]
    assert [i["detected"] for i in per_incident] == [True, True]
    second = per_incident[1]
    assert second["first_alert"]["feature"] == "device"
    # Delay in events is the model's events in the incident before the alert.
    delay = second["delay_seconds"]
    assert abs(second["delay_events"] - delay / STEP) <= 2
    assert summary["dead_letters"] == {"malformed_json": 1}
    assert summary["bad_lines"]["count"] == 1
    assert summary["bad_lines"]["first"][0]["line"] == 201
    assert summary["input"]["records"] == 60_001
    assert (out / "report.html").stat().st_size > 10_000


def replay_of(workspace, out, sets, config="config.yaml"):
    options = ReplayOptions(
        config=workspace / config,
        out=out,
        data=[workspace / "events.jsonl.gz"],
        sets=sets,
        quiet=True,
        report=False,
    )
    return replay(options)


def test_each_setting_of_a_sweep_equals_its_own_replay(workspace, tmp_path):
    path = f"models.{MODEL}.window.size"
    swept = replay_of(workspace, tmp_path / "sweep", [f"{path}=500,2000"])
    for run in swept.runs:
        alone = replay_of(
            workspace, tmp_path / f"alone-{run.index}", [f"{path}={run.values[path]}"]
        )
        assert alone.runs[0].alerts() == run.alerts()
        assert len(alone.runs[0].watch.timeline) == len(run.watch.timeline)
    assert swept.runs[0].alerts() != swept.runs[1].alerts()


def test_the_outputs_hold_alerts_as_published_and_every_judged_window(workspace, tmp_path):
    out = tmp_path / "one"
    assert run_cli(workspace, out) == 0
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert alerts and all(len(a["alert_id"]) == 32 for a in alerts)
    assert {a["kind"] for a in alerts} >= {"drift"}
    timeline = pq.read_table(out / "timeline.parquet").to_pylist()
    windows = [r for r in timeline if r["kind"] == "window"]
    # 60,000 predictions in windows of 1,000: 60 windows of every column and statistic.
    per_series = {}
    for row in windows:
        key = (row["column"], row["statistic"], row["reference"])
        per_series[key] = per_series.get(key, 0) + 1
    assert set(per_series.values()) == {60}
    assert {"amount", "device", "__score__"} <= {c for c, _, _ in per_series}
    assert all(r["count"] == 1000 and r["window_end"] >= r["window_start"] for r in windows)
    fired = [r for r in timeline if r["kind"] == "detector"]
    detector_alerts = [a for a in alerts if a["detector"] != "window"]
    assert len(fired) == len(detector_alerts)
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert [s["name"] for s in summary["settings"]] == ["config as given"]
    assert summary["settings"][0]["output"] == "."


def test_bad_sweeps_and_inputs_name_what_to_fix_and_exit_2(workspace, tmp_path, capsys):
    def replay_cli(*args):
        base = ["replay", "--config", str(workspace / "config.yaml"), "--out", str(tmp_path)]
        return main([*base, *args])

    bad = f"models.{MODEL}.detectors.page_hinkly.threshold=50"
    assert run_cli(workspace, tmp_path / "a", "--set", bad) == 2
    assert "page_hinkly" in capsys.readouterr().err
    assert replay_cli("--data", str(tmp_path / "missing.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert replay_cli("--data", str(empty), "--quiet") == 2
    assert "holds no records" in capsys.readouterr().err
    assert replay_cli("--data", str(empty), "--from", "2026-01-01T00:00:00Z") == 2
    assert "not both" in capsys.readouterr().err


def test_routing_by_repartition_replays_to_the_same_alerts(workspace, tmp_path):
    document = yaml.safe_load((workspace / "config.yaml").read_text())
    document["kafka"]["routing"] = "repartition"
    (workspace / "repartition.yaml").write_text(yaml.safe_dump(document))
    by_key = replay_of(workspace, tmp_path / "by-key", [])
    forwarded = replay_of(workspace, tmp_path / "repartition", [], "repartition.yaml")
    ids = {orjson.loads(a)["alert_id"] for a in forwarded.runs[0].alerts()}
    assert ids == {orjson.loads(a)["alert_id"] for a in by_key.runs[0].alerts()}
    assert ids
