"""Helpers for the integration tests: configs, traffic, topics, Redis snapshots."""

import threading
import time
from pathlib import Path

import numpy as np
import orjson
import redis
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from driftstream.config import load_config
from driftstream.core.baseline import build_profile
from driftstream.runtime.app import build_worker, create_topics
from driftstream.runtime.store import PartitionStore, stores_for_group
from driftstream.synthetic import feature_rows, frame

START_TS = 1_767_225_600.0
DRIFTED = ("amount", "country")


def fraud_profile(model_id="fraud-detector", created_at=None):
    """The fraud model's baseline, from 20,000 rows of ``synthetic.frame``, under ``model_id``."""
    return build_profile(
        frame(20_000, seed=1),
        model_id=model_id,
        prediction="prediction",
        score="score",
        target="label",
        positive="fraud",
        created_at=created_at,
    )


def prediction_events(model_id, times, seed, fault=lambda row, features: None):
    """(ts, model, value) of one model's prediction events at ``times`` (seconds from START_TS).

    ``fault(row, features)`` may break an event's features in place; event
    ids are ``<model_id>-<row>``.
    """
    data = frame(len(times), seed)
    rows = feature_rows(data)
    found = []
    for row, at in enumerate(times):
        features = rows[row]
        fault(row, features)
        event = {
            "event_id": f"{model_id}-{row}",
            "model_id": model_id,
            "model_version": "v1",
            "ts": START_TS + at,
            "features": features,
            "prediction": data["prediction"][row],
            "score": float(data["score"][row]),
        }
        found.append((START_TS + at, model_id, orjson.dumps(event)))
    return found


def write_config(
    tmp_path,
    bootstrap,
    redis_url,
    name,
    *,
    models=("fraud-detector",),
    partitions=2,
    batch_size=1000,
    inputs=None,
    window=2000,
    labels=None,
):
    """A config file for one test: its own topics, group and key prefix.

    ``labels`` is each model's labels section (none: labels refused).
    """
    baselines = tmp_path / "baselines"
    baselines.mkdir(exist_ok=True)
    for model_id in models:
        (baselines / f"{model_id}.json").write_bytes(fraud_profile(model_id).to_json())
    document = {
        "models": {
            m: {
                "baseline": f"baselines/{m}.json",
                "window": {"size": window},
                **({"labels": labels} if labels else {}),
            }
            for m in models
        },
        "kafka": {
            "client": {
                "bootstrap.servers": bootstrap,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
            },
            "group_id": f"{name}-group",
            "topics": {
                "predictions": f"{inputs or name}.predictions",
                "features": f"{inputs or name}.features",
                "labels": f"{inputs or name}.labels",
                "alerts": f"{name}.alerts",
                "dlq": f"{name}.dlq",
            },
            "partitions": partitions,
            "batch_size": batch_size,
            "batch_timeout_seconds": 0.2,
        },
        "redis": {"url": redis_url, "key_prefix": name},
        "metrics": {"port": 0},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    config = load_config(path)
    create_topics(config)
    return path, config


def events(n_stable, n_drifted, seed, model_id="fraud-detector", start=0):
    """Prediction events as JSON bytes: stable traffic, then drifted traffic."""
    parts = [frame(n_stable, seed)]
    if n_drifted:
        parts.append(frame(n_drifted, seed + 1000, drift=DRIFTED))
    rows = [
        (features, prediction, score)
        for part in parts
        for features, prediction, score in zip(
            feature_rows(part), part["prediction"].tolist(), part["score"].tolist(), strict=True
        )
    ]
    return [
        orjson.dumps(
            {
                "event_id": f"{model_id}-{index}",
                "model_id": model_id,
                "model_version": "v1",
                "ts": START_TS + index * 0.01,
                "features": features,
                "prediction": prediction,
                "score": score,
            }
        )
        for index, (features, prediction, score) in enumerate(rows, start)
    ]


# A labels section for tests: windows of 10 s of prediction time, judged
# once their labels had 10 s more (label_events' delays average 20 s).
LABELS = {
    "positive": "fraud",
    "window_seconds": 10.0,
    "wait_seconds": 10.0,
    "lateness_seconds": 2.0,
    "ttl_seconds": 600.0,
}


def label_events(n, seed, model_id="fraud-detector", start=0, concept_from=None):
    """Label events for ``events(...)``'s predictions, in the order a label source sends them.

    About a tenth never come, a few come before their prediction, the rest
    after an exponential delay (mean 20 s of event time). From index
    ``concept_from`` on, the label ignores the model's score (a concept drift).
    """
    rng = np.random.default_rng(seed)
    truth = frame(n, seed)["label"].tolist()  # the labels of events(n, 0, seed)'s rows
    delays = rng.exponential(20.0, n)
    delays[rng.random(n) < 0.03] = -0.5
    sent = []
    for index in range(start, start + n):
        if rng.random() < 0.1:
            continue
        label = truth[index - start]
        if concept_from is not None and index >= concept_from:
            label = "fraud" if rng.random() < 0.5 else "ok"
        ts = START_TS + index * 0.01 + float(delays[index - start])
        event = {"event_id": f"{model_id}-{index}", "model_id": model_id, "ts": ts, "label": label}
        sent.append((ts, index, orjson.dumps(event)))
    sent.sort()
    return [value for _, _, value in sent]


def produce(bootstrap, topic, values, key, partition=None):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value in values:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic, value=value, key=key, **kwargs)
        producer.poll(0)
    assert producer.flush(30) == 0


def read_topic(bootstrap, topic, at_least=0, timeout=30.0, quiet=1.5):
    """Every message on ``topic``: waits for ``at_least``, then for ``quiet`` seconds of nothing."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, deadline, last = [], time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, 0.2) if m.error() is None]
        messages += batch
        if batch:
            last = time.monotonic()
        elif len(messages) >= at_least and time.monotonic() - last > quiet:
            break
    consumer.close()
    return messages


def alert_ids(messages):
    return {orjson.loads(m.value())["alert_id"] for m in messages}


def snapshot(redis_url, prefix, group, client=None):
    """Offsets and decoded monitor states of every partition unit of a group.

    ``client``, when given, reads instead of one made for ``redis_url`` (a cluster's).
    """
    client = client or redis.Redis.from_url(redis_url)
    result = {}
    for partition in stores_for_group(client, prefix=prefix, group=group):
        store = PartitionStore(client, prefix=prefix, group=group, partition=partition)
        data = store.snapshot()
        result[partition] = {
            "offsets": data["offsets"],
            "states": {name: orjson.loads(blob) for name, blob in data["states"].items()},
            "join": data["join"],
        }
    return result


def committed(redis_url, prefix, group, client=None):
    """Total committed offsets over every unit and topic (``client``: as for snapshot)."""
    client = client or redis.Redis.from_url(redis_url)
    total = 0
    for partition in stores_for_group(client, prefix=prefix, group=group):
        store = PartitionStore(client, prefix=prefix, group=group, partition=partition)
        total += sum(store.offsets().values())
    return total


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def repo_root():
    return Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``driftstream run`` as a child process, with the partitions it owns read from its log."""

    def __init__(self, config_path, name="worker"):
        import shutil
        import subprocess
        import sys
        import threading

        script = shutil.which("driftstream", path=str(Path(sys.executable).parent))
        self.name = name
        self.lines = []
        self.owned = set()
        self.process = subprocess.Popen(
            [script, "run", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        import ast

        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            for verb in ("claimed partitions ", "released partitions "):
                if verb in line:
                    numbers = set(ast.literal_eval(line.split(verb, 1)[1].strip()))
                    self.owned = numbers if verb.startswith("claimed") else self.owned - numbers

    def kill(self):
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        import signal

        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._reader.join(5)
        return code

    def log(self):
        return "\n".join(self.lines[-30:])


def first_difference(a, b, path="state"):
    """Where two nested plain-data values first differ (for assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only in one"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def killed_run(bootstrap, redis_url, path, config, total, alerts, shares=(0.15, 0.45, 0.75)):
    """Run ``driftstream run`` on ``path``, SIGKILL it once each share is committed, finish.

    Returns after the last worker committed ``total`` records, relayed at
    least ``alerts`` alerts and stopped cleanly.
    """
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    kills = 0
    for share in shares:
        worker = WorkerProcess(path)
        wait_for(
            lambda share=share: committed(redis_url, prefix, group) >= share * total,
            120,  # a liveness bound: startup and catch-up on a busy 2-core machine
            f"{share:.0%} committed",
        )
        worker.kill()
        kills += committed(redis_url, prefix, group) < total
    assert kills >= 2, "the worker finished before it could be killed mid-stream"
    worker = WorkerProcess(path)
    wait_for(lambda: committed(redis_url, prefix, group) >= total, 90, "the rest committed")
    wait_for(
        lambda: len(read_topic(bootstrap, config.kafka.topics.alerts, quiet=0.5)) >= alerts,
        30,
        "alerts relayed",
    )
    assert worker.stop() == 0, worker.log()


def run_in_thread(config, total, timeout=90):
    """Run a worker until it committed ``total`` records and emptied its outbox."""
    registry = CollectorRegistry()
    worker = build_worker(config, registry)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: worker.processed >= total and worker.pending_outbox() == 0,
            timeout,
            f"{total} records processed",
        )
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    return worker, registry
