"""The runtime commands as a user runs them: subprocesses of the installed script."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline import write_config

pytestmark = pytest.mark.integration

SCRIPT = shutil.which("driftstream", path=str(Path(sys.executable).parent))


def run(*args, env=None, timeout=170):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_json_meets_its_contract():
    result = run("demo", "--events", "12000", "--drift-at", "6000", "--seed", "7", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[-1]["summary"]
    alerts = lines[:-1]
    assert summary["events"] == 12_000 and summary["alerts"] == len(alerts)
    assert summary["drifted_features"] == ["amount", "latency_ms", "country"]
    allowed = {*summary["drifted_features"], "__prediction__", "__score__"}
    drifts = [a for a in alerts if a["kind"] == "drift"]
    assert all(a["feature"] in allowed for a in drifts)
    assert all(a["event_time"] >= summary["drift_at_ts"] for a in drifts)
    assert {a["feature"] for a in drifts} >= set(summary["drifted_features"])
    assert "events processed" in result.stderr  # the progress display


def test_demo_refuses_a_drift_point_outside_the_stream():
    result = run("demo", "--events", "100", "--drift-at", "500")
    assert result.returncode == 2
    assert "--drift-at 500" in result.stderr


def test_run_names_the_missing_service(tmp_path, kafka_bootstrap, unique):
    path, _ = write_config(tmp_path, kafka_bootstrap, "redis://127.0.0.1:1/0", unique)
    result = run("run", "--config", str(path), timeout=60)
    assert result.returncode == 1
    assert "Redis at redis://127.0.0.1:1/0 (redis.url) does not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_topics_create_reports_each_topic(tmp_path, kafka_bootstrap, redis_url, unique):
    path, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    result = run("topics", "create", "--config", str(path), timeout=60)
    assert result.returncode == 0, result.stderr
    # write_config created them already, so each one is reported as existing
    for topic in (
        config.kafka.topics.predictions,
        config.kafka.topics.alerts,
        config.kafka.topics.dlq,
    ):
        assert f"{topic}: exists" in result.stdout
