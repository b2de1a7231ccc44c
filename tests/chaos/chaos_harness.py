"""Traffic, faults and the oracle comparison for the chaos suite.

Every scenario runs the same input twice: once through an uninterrupted
worker (the oracle), once through workers that are killed, stopped and cut
off from Redis or Kafka. Both must end with the same committed state, the
same set of alert ids, and every malformed record dead-lettered with its
reason.
"""

import functools
import hashlib
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import yaml
from confluent_kafka import Producer

# The runtime tests' helpers (configs, traffic, snapshots) serve here too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from pipeline import (
    LABELS,  # noqa: F401  (the chaos configs' labels section, for test_chaos)
    WorkerProcess,
    alert_ids,
    committed,
    events,
    label_events,
    read_topic,
    snapshot,
    wait_for,
)

from driftstream.config import load_config
from driftstream.runtime.alerts import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from driftstream.runtime.services import EmbeddedKafka, free_port
from driftstream.runtime.store import PartitionStore, open_client, stores_for_group

MODELS = ("m0", "m1", "m2")
MAX_BYTES = 20_000  # limits.max_message_bytes in the chaos configs, so "oversized" is cheap


def good_event(model_id, index, **changes):
    event = {
        "event_id": f"bad-{index}",
        "model_id": model_id,
        "model_version": "v1",
        "ts": 1_767_225_600.0 + index * 0.01,
        "features": {"amount": 12.5, "latency_ms": 80.0, "country": "US"},
        "prediction": "ok",
        "score": 0.25,
    }
    event.update(changes)
    return event


def _json(event):
    return orjson.dumps(event)


def _with(index, old, new):
    value = _json(good_event("m0", index))
    assert value.count(old) == 1, (old, value)
    return value.replace(old, new)


# (expected reason, key, value) makers; every kind the issue lists, and a few more.
MALFORMED = {
    "truncated": ("malformed_json", lambda i: _json(good_event("m0", i))[:-7]),
    "non_utf8": ("malformed_json", lambda i: b'{"event_id": "\xff\xfe"}'),
    "deep_nesting": ("malformed_json", lambda i: b"[" * 3000 + b"]" * 3000),
    "deep_feature": (
        "wrong_type",
        lambda i: _json(good_event("m0", i, features={"amount": [[[[[[[[1]]]]]]]]})),
    ),
    "huge_float": ("non_finite", lambda i: _with(i, b'"amount":12.5', b'"amount":1e400')),
    "huge_int": ("non_finite", lambda i: _with(i, b'"amount":12.5', b'"amount":' + b"9" * 400)),
    "nan_literal": ("non_finite", lambda i: _with(i, b'"score":0.25', b'"score":NaN')),
    "duplicate_keys": (
        "unknown_model",
        lambda i: _with(i, b'"model_id":"m0"', b'"model_id":"m0","model_id":"nobody"'),
    ),
    "string_feature": ("wrong_type", lambda i: _with(i, b'"amount":12.5', b'"amount":"twelve"')),
    "bool_ts": (
        "wrong_type",
        lambda i: _json(good_event("m0", i, ts=True)),
    ),
    "numeric_model_id": ("wrong_type", lambda i: _with(i, b'"model_id":"m0"', b'"model_id":7')),
    "many_features": (
        "too_many_features",
        lambda i: _json(good_event("m0", i, features={f"f{n}": 1 for n in range(300)})),
    ),
    "empty": ("empty", lambda i: b""),
    "no_value": ("empty", lambda i: None),
    "json_null": ("not_an_object", lambda i: b"null"),
    "array": ("not_an_object", lambda i: b"[1, 2, 3]"),
    "null_features": ("missing_field", lambda i: _json(good_event("m0", i, features=None))),
    "no_event_id": (
        "missing_field",
        lambda i: _json({k: v for k, v in good_event("m0", i).items() if k != "event_id"}),
    ),
    "short_ts": ("bad_timestamp", lambda i: _json(good_event("m0", i, ts="2026-05-01T12:00Z"))),
    "millis_ts": ("bad_timestamp", lambda i: _json(good_event("m0", i, ts=1_767_225_600_000))),
    "offset_no_colon": (
        "bad_timestamp",
        lambda i: _json(good_event("m0", i, ts="2026-05-01T12:00:00+0200")),
    ),
    "oversized": (
        "oversized",
        lambda i: _json(good_event("m0", i, event_id="x" * (MAX_BYTES + 10))),
    ),
    "unknown_model": ("unknown_model", lambda i: _json(good_event("nobody", i))),
    "key_mismatch": ("key_mismatch", lambda i: _json(good_event("m1", i))),  # keyed m0
}


def malformed(count, seed):
    """``count`` bad records, every kind in turn: (kind, expected reason, value)."""
    rng = random.Random(seed)
    kinds = sorted(MALFORMED)
    out = []
    for index in range(count):
        kind = kinds[index % len(kinds)] if index < len(kinds) else rng.choice(kinds)
        reason, make = MALFORMED[kind]
        out.append((kind, reason, make(index)))
    return out


class Traffic:
    """Good events (and their labels) for every model and bad records, produced in slices.

    Model ``m<i>`` lives on partition ``i`` (keyed by its id) of the
    predictions topic and of the labels topic (``topics``: the config's), where
    its labels follow in the order a label source sends them. Bad records go
    to predictions partition 0 keyed ``m0``, at random places between good
    ones. A record's offset is its place in its stream: one producer writes
    each stream in order.
    """

    def __init__(self, topics, good_per_model, bad, seed):
        rng = random.Random(seed)
        topic = topics.predictions
        self.streams = []  # (topic, partition, [(key, value, expected reason or None)])
        for number, model_id in enumerate(MODELS):
            half = good_per_model // 2
            values = events(half, half, seed + number, model_id=model_id)
            self.streams.append((topic, number, [(model_id.encode(), v, None) for v in values]))
        for _kind, reason, value in malformed(bad, seed):
            records = self.streams[0][2]
            records.insert(rng.randrange(len(records) + 1), (b"m0", value, reason))
        for number, model_id in enumerate(MODELS):
            labels = label_events(good_per_model, seed + number, model_id=model_id)
            key = model_id.encode()
            self.streams.append((topics.labels, number, [(key, v, None) for v in labels]))
        # Interleave the streams at random, each in its own order.
        draws = [s for s, (_, _, records) in enumerate(self.streams) for _ in records]
        rng.shuffle(draws)
        self.order = draws

    def __len__(self):
        return len(self.order)

    def produce(self, bootstrap, slices=1, pause=0.0):
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 2 * MAX_BYTES}
        )
        size = -(-len(self.order) // slices)
        nexts = [0] * len(self.streams)
        for start in range(0, len(self.order), size):
            for stream in self.order[start : start + size]:
                topic, partition, records = self.streams[stream]
                key, value, _ = records[nexts[stream]]
                nexts[stream] += 1
                producer.produce(topic, value=value, key=key, partition=partition)
                producer.poll(0)
            assert producer.flush(30) == 0
            time.sleep(pause)

    def produce_in_background(self, bootstrap, seconds):
        slices = max(1, int(seconds))
        thread = threading.Thread(target=self.produce, args=(bootstrap, slices, 1.0), daemon=True)
        thread.start()
        return thread

    def expected_dead(self):
        """(topic, partition, offset) -> reason of every bad record."""
        return {
            (topic, partition, offset): reason
            for topic, partition, records in self.streams
            for offset, (_, _, reason) in enumerate(records)
            if reason is not None
        }


def chaos_config(path, cluster=False):
    """Tighten a test config for chaos: small records limit, models m0..m2.

    ``cluster``: its redis.url names a node of a Redis Cluster.
    """
    document = yaml.safe_load(path.read_text())
    document["limits"] = {"max_message_bytes": MAX_BYTES}
    document["redis"]["cluster"] = cluster
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


def digest(found):
    """A short hash of a snapshot: every unit's offsets, decoded states and join buffer."""
    canonical = orjson.dumps(_plain(found), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


def _plain(value):
    """Bytes (the join buffer's ids and entries) as hex, so orjson can write them."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _client(redis_url, cluster):
    return open_client(redis_url, cluster=cluster)


def store_client(redis_url, config):
    """One client per Redis (or Redis Cluster) for the harness's many reads."""
    return _client(redis_url, config.redis.cluster)


def committed_of(redis_url, config):
    """Records a run's group committed, over every unit and topic."""
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    return committed(redis_url, prefix, group, client=store_client(redis_url, config))


def outcome(bootstrap, redis_url, config, alerts_at_least=1):
    """What a run left: its snapshot, alert ids and dead letters by source."""
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    found = snapshot(redis_url, prefix, group, client=store_client(redis_url, config))
    ids = alert_ids(read_topic(bootstrap, config.kafka.topics.alerts, alerts_at_least))
    letters = {}
    copies = 0
    for message in read_topic(bootstrap, config.kafka.topics.dlq, quiet=1.0):
        headers = dict(message.headers())
        source = (
            headers[HEADER_TOPIC].decode(),
            int(headers[HEADER_PARTITION]),
            int(headers[HEADER_OFFSET]),
        )
        copies += source in letters
        letters[source] = headers[HEADER_REASON].decode()
    return found, ids, letters, copies


def wait_committed(redis_url, config, total, timeout, what):
    """Until ``total`` records are committed and, once all are, every outbox is relayed."""
    wait_for(lambda: committed_of(redis_url, config) >= total, timeout, what)
    wait_for(lambda: outbox_size(redis_url, config) == 0, 60, f"{what}: outbox relayed")


def outbox_size(redis_url, config):
    client = store_client(redis_url, config)
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    return sum(
        PartitionStore(client, prefix=prefix, group=group, partition=number).outbox_size()
        for number in stores_for_group(client, prefix=prefix, group=group)
    )


class Crew:
    """Workers of one group, killed, stopped and restarted at random (seeded) moments."""

    def __init__(self, path, size, seed):
        self.path = path
        self.rng = random.Random(seed)
        self.workers = [WorkerProcess(path, f"w{n}") for n in range(size)]
        self.kills = 0
        self.logs = []

    def kill_one(self):
        index = self.rng.randrange(len(self.workers))
        victim = self.workers[index]
        victim.kill()
        self.logs += victim.lines
        self.kills += 1
        self.workers[index] = WorkerProcess(self.path, f"w{index}-{self.kills}")

    def zombie(self, seconds):
        """SIGSTOP a worker past the session timeout, then let it go on (it must be fenced)."""
        victim = self.workers[self.rng.randrange(len(self.workers))]
        victim.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        victim.process.send_signal(signal.SIGCONT)
        return victim

    def alive(self):
        return all(w.process.poll() is None for w in self.workers)

    def stop(self):
        codes = []
        for worker in self.workers:
            codes.append(worker.stop())
            self.logs += worker.lines
        return codes

    def kill_all(self):
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.kill()


class S3Storage:
    """An S3 server of the test's own (moto), so a Tansu broker keeps its log across restarts.

    The embedded broker's default storage is memory; of its other engines
    only S3 is built in, and moto serves S3 on loopback.
    """

    bucket = "tansu"

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.process = None

    def start(self):
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        assert binary, "moto_server is missing: pip install -e '.[dev]'"
        with (self.workdir / "moto.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log
            )
        wait_for(self._answers, 30, "the S3 server")
        request = urllib.request.Request(f"{self.url}/{self.bucket}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _answers(self):
        try:
            urllib.request.urlopen(self.url, timeout=1).close()
        except OSError:
            return False
        return True

    def environment(self):
        """What the broker needs in its environment to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PersistentBroker(EmbeddedKafka):
    """A Tansu broker on a fixed port whose topics live in S3: it can be restarted."""

    name = "restartable Kafka broker"

    def command(self):
        command = super().command()
        command[command.index("--storage-engine") + 1] = f"s3://{S3Storage.bucket}/"
        return command

    def kill(self):
        self._process.kill()
        self._process.wait()
