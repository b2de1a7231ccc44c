"""The runtime commands as a user runs them: subprocesses of the installed script."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline import write_config

from driftstream.runtime.services import EmbeddedRedis, find_redis_server, free_port

pytestmark = pytest.mark.integration

SCRIPT = shutil.which("driftstream", path=str(Path(sys.executable).parent))


def run(*args, env=None, timeout=170):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_json_meets_its_contract(tmp_path):
    saved = tmp_path / "demo"
    result = run(
        "demo",
        "--events",
        "12000",
        "--drift-at",
        "6000",
        "--seed",
        "7",
        "--json",
        "--save",
        str(saved),
    )
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
    # What --save wrote replays to the alerts the demo's worker published.
    out = tmp_path / "backtest"
    replayed = run(
        "replay",
        "--config",
        str(saved / "config.yaml"),
        "--data",
        str(saved / "events.jsonl.gz"),
        "--incidents",
        str(saved / "incidents.yaml"),
        "--out",
        str(out),
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    published = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert {a["alert_id"] for a in published} == {a["alert_id"] for a in alerts}
    backtest = json.loads((out / "summary.json").read_text())
    assert [i["model_id"] for i in backtest["incidents"]] == ["fraud-detector"] * 2
    assert all(i["caught_by"] for i in backtest["incidents"])
    assert "incidents caught by any alert (first setting): 2 of 2" in replayed.stdout


def test_demo_catches_the_concept_drift_with_labels_and_nothing_before_it():
    result = run("demo", "--events", "60000", "--drift-at", "30000", "--seed", "7", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary, alerts = lines[-1]["summary"], lines[:-1]
    assert summary["labels"] > 0.85 * 60_000
    concept = summary["concept_drift_at_ts"]
    assert concept < summary["drift_at_ts"]  # the labels change first, the features later
    performance = [a for a in alerts if a["kind"] == "performance"]
    assert summary["performance_alerts"] == len(performance) >= 1
    assert all(a["event_time"] >= concept for a in performance)
    stable = set(summary["stable_features"])
    assert not [a for a in alerts if a["kind"] == "drift" and a["feature"] in stable]


def test_demo_without_labels_publishes_no_performance_alerts():
    result = run("demo", "--events", "6000", "--no-labels", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.splitlines()[-1])["summary"]
    assert summary["labels"] == 0 and summary["performance_alerts"] == 0
    assert summary["concept_drift_at_ts"] is None


def test_demo_refuses_a_drift_point_outside_the_stream():
    result = run("demo", "--events", "100", "--drift-at", "500")
    assert result.returncode == 2
    assert "--drift-at 500" in result.stderr


def error_line(result, code):
    """The one error line of a command that failed with ``code``, never a traceback."""
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("driftstream: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def edit_config(path, client=None, **sections):
    """Change a config file: merge ``client`` into kafka.client, replace other sections."""
    document = yaml.safe_load(path.read_text())
    document["kafka"]["client"].update(client or {})
    for name, values in sections.items():
        document[name].update(values)
    path.write_text(yaml.safe_dump(document))
    return path


class PasswordRedis(EmbeddedRedis):
    """A private redis-server that requires a password."""

    password = "s3cret-pw"

    @property
    def url(self):
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def command(self):
        return [*super().command(), "--requirepass", self.password]


@pytest.fixture(scope="module")
def password_redis():
    with PasswordRedis(find_redis_server()) as server:
        yield server


def test_run_names_the_missing_service(tmp_path, kafka_bootstrap, unique):
    path, _ = write_config(tmp_path, kafka_bootstrap, "redis://127.0.0.1:1/0", unique)
    result = run("run", "--config", str(path), timeout=60)
    line = error_line(result, 1)
    assert "Redis at redis://127.0.0.1:1/0 (redis.url) does not answer" in line
    assert "redis-server --port 1" in line  # how to start it


@pytest.mark.parametrize(
    ("credentials", "why"),
    [("", "requires a password"), (":wrong-pw@", "refused the user or password")],
)
def test_run_says_redis_authentication_failed(
    tmp_path, kafka_bootstrap, unique, password_redis, credentials, why
):
    url = f"redis://{credentials}{password_redis.host}:{password_redis.port}/0"
    path, _ = write_config(tmp_path, kafka_bootstrap, url, unique)
    line = error_line(run("run", "--config", str(path), timeout=60), 1)
    assert "(redis.url): authentication failed" in line and why in line
    assert "wrong-pw" not in line


def test_run_says_the_metrics_port_is_in_use(tmp_path, kafka_bootstrap, redis_url, unique):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
        edit_config(path, metrics={"host": "127.0.0.1", "port": port})
        line = error_line(run("run", "--config", str(path), timeout=60), 1)
    assert f"metrics.port {port} on 127.0.0.1 is in use" in line


@pytest.mark.parametrize("command", [("run", "--config"), ("topics", "create", "--config")])
def test_bad_client_settings_stop_the_runtime_commands(
    tmp_path, kafka_bootstrap, redis_url, unique, command
):
    path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    edit_config(path, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "FOO"})
    line = error_line(run(*command, str(path), timeout=60), 2)
    assert "kafka.client.sasl.mechanism: Unsupported SASL mechanism: FOO" in line


def test_topics_create_uses_the_security_settings(tmp_path, kafka_bootstrap, redis_url, unique):
    """A SASL client is turned away by a broker without SASL, not told it answers."""
    path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    sasl = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "drift",
        "sasl.password": "hunter2",
    }
    edit_config(path, sasl)
    line = error_line(run("topics", "create", "--config", str(path), timeout=60), 1)
    assert f"Kafka at '{kafka_bootstrap}'" in line and "security.protocol SASL_PLAINTEXT" in line
    assert "hunter2" not in line


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


def test_topics_create_names_a_broker_that_does_not_answer(
    tmp_path, kafka_bootstrap, redis_url, unique
):
    path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    nobody = f"127.0.0.1:{free_port()}"
    edit_config(path, {"bootstrap.servers": nobody})
    line = error_line(run("topics", "create", "--config", str(path), timeout=60), 1)
    assert f"Kafka at '{nobody}' (kafka.client.bootstrap.servers" in line
    assert "Connection refused" in line and "Start a Kafka broker there" in line
