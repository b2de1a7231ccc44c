"""``driftstream traffic``: the demo's generator produced live to a broker, and its baselines."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from driftstream.cli import main
from driftstream.config import load_config
from driftstream.runtime.app import create_topics
from driftstream.runtime.routing import murmur2_partition
from driftstream.synthetic import COUNTRIES

pytestmark = pytest.mark.integration

LABELS = {"positive": "fraud", "window_seconds": 60.0, "wait_seconds": 60.0, "ttl_seconds": 600.0}


def write_config(tmp_path, bootstrap, name, models=("fraud-a", "fraud-b"), labelled=("fraud-a",)):
    document = {
        "models": {
            model_id: {
                "baseline": f"baselines/{model_id}.json",
                **({"labels": LABELS} if model_id in labelled else {}),
            }
            for model_id in models
        },
        "kafka": {
            "client": {"bootstrap.servers": bootstrap},
            "group_id": f"{name}-group",
            "topics": {
                role: f"{name}.{role}" for role in ("predictions", "features", "labels", "alerts")
            },
            "partitions": 2,
        },
        "metrics": {"port": 0},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def read_all(bootstrap, topic, expected, timeout=30.0):
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "traffic-reader", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found, deadline = [], time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        found += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    consumer.close()
    return found


@pytest.fixture
def topics_config(tmp_path, kafka_bootstrap, unique):
    path = write_config(tmp_path, kafka_bootstrap, unique)
    create_topics(load_config(path, environ={}))
    return path


def test_traffic_produces_the_events_with_the_drift_and_labels_of_labelled_models(
    topics_config, kafka_bootstrap, capsys
):
    config = load_config(topics_config, environ={})
    args = ["traffic", "--config", str(topics_config), "--events", "600", "--rate", "100000"]
    assert main([*args, "--drift-at", "300", "--label-delay", "0", "--seed", "3"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]

    messages = read_all(kafka_bootstrap, config.kafka.topics.predictions, 600)
    events = [orjson.loads(m.value()) for m in messages]
    assert len(events) == 600
    assert {e["model_id"] for e in events} == {"fraud-a", "fraud-b"}
    for message, event in zip(messages, events, strict=True):
        # Keyed by model with murmur2, as every producer of a model must.
        assert message.key() == event["model_id"].encode()
        assert message.partition() == murmur2_partition(message.key(), 2)
    # The drift gives country a market the baseline never saw, from event 300 on.
    order = sorted(events, key=lambda e: e["ts"])
    before, after = order[:290], order[310:]
    assert all(e["features"]["country"] in (*COUNTRIES, None) for e in before)
    assert sum(e["features"]["country"] == "MX" for e in after) > 30
    assert all(isinstance(e["features"]["is_new_customer"], bool) for e in events)

    sent = int(summary.removeprefix("produced 600 prediction events and ").split()[0])
    messages = read_all(kafka_bootstrap, config.kafka.topics.labels, sent)
    labels = [orjson.loads(m.value()) for m in messages]
    assert len(labels) == sent
    assert summary == f"produced 600 prediction events and {sent} labels"
    labelled = {e["event_id"] for e in events if e["model_id"] == "fraud-a"}
    assert {label["model_id"] for label in labels} == {"fraud-a"}
    assert {label["event_id"] for label in labels} <= labelled
    # A tenth of labels never come, as from a real label source.
    assert 0.8 * len(labelled) < len(labels) < len(labelled)
    assert {label["label"] for label in labels} <= {"fraud", "ok"}


def test_write_baselines_writes_what_validate_config_accepts_and_keeps_existing_files(
    topics_config, capsys
):
    baselines = topics_config.parent / "baselines"
    command = ["traffic", "--config", str(topics_config), "--write-baselines"]
    assert main(command) == 0
    assert sorted(p.name for p in baselines.iterdir()) == ["fraud-a.json", "fraud-b.json"]
    assert main(["validate-config", str(topics_config)]) == 0
    out = capsys.readouterr().out
    assert "fraud-a: labels joined (classification" in out
    assert "2 baseline(s) written, 0 kept" in out

    before = (baselines / "fraud-a.json").read_bytes()
    assert main(command) == 0
    assert (baselines / "fraud-a.json").read_bytes() == before
    captured = capsys.readouterr()
    assert "0 baseline(s) written, 2 kept" in captured.out
    assert "fraud-a: kept the existing baseline" in captured.err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rate", "0"], "--rate must be a positive number of events per second, got 0.0"),
        (["--events", "-1"], "--events must be 0 (no end) or more, got -1"),
        (
            ["--model", "churn"],
            "--model churn: not a model of the config (models: fraud-a, fraud-b)",
        ),
        (["--label-delay", "nan"], "--label-delay must be 0 or more seconds, got nan"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    path = write_config(tmp_path, "127.0.0.1:1", "bad")
    assert main(["traffic", "--config", str(path), *arguments]) == 2
    err = capsys.readouterr().err
    assert err == f"driftstream: error: {message}\n"


def test_sigterm_stops_an_endless_run_cleanly(topics_config, kafka_bootstrap):
    config = load_config(topics_config, environ={})
    script = Path(sys.executable).parent / "driftstream"
    process = subprocess.Popen(
        [script, "traffic", "--config", topics_config, "--rate", "500", "--label-delay", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_all(kafka_bootstrap, config.kafka.topics.predictions, 50, timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "events until stopped" in err
    produced = int(out.split("produced ")[1].split(" prediction")[0].replace(",", ""))
    assert produced >= 50
    assert "labels not due yet were dropped" in out
