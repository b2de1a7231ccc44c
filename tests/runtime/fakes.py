"""An in-memory Kafka and a Redis client that fails on demand, for fast worker tests.

``FakeBroker`` keeps topics as lists of messages. ``FakeConsumer`` is the one
member of its group: ``subscribe`` assigns it every partition at the next
``consume`` (through the callbacks, as confluent-kafka does), and
``rebalance`` / ``lose`` schedule the next ones. ``FakeProducer`` appends to
the broker when flushed or polled, unless the broker is down (messages wait)
or a failure is queued (the delivery callback gets the error); a message
over ``message.max.bytes`` is refused at ``produce`` with
``MSG_SIZE_TOO_LARGE``, as librdkafka does.

``FlakyRedis`` is a real redis-py client on the real test Redis that raises
``ConnectionError`` for chosen commands while "down", or after a command ran
(a reply lost on the way back).
"""

import zlib

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    TopicPartition,
)


class FakeMessage:
    def __init__(self, topic, partition, offset, key, value, headers=None, error=None):
        self._fields = (topic, partition, offset, key, value, headers, error)

    def topic(self):
        return self._fields[0]

    def partition(self):
        return self._fields[1]

    def offset(self):
        return self._fields[2]

    def key(self):
        return self._fields[3]

    def value(self):
        return self._fields[4]

    def headers(self):
        return self._fields[5]

    def error(self):
        return self._fields[6]


class FakeBroker:
    def __init__(self):
        self.topics = {}
        self.committed = {}  # (group, topic, partition) -> offset
        self.consume_errors = []  # KafkaErrors the next consume returns
        self.down = False  # producers cannot deliver while down
        self.delivery_failures = []  # KafkaErrors for the next deliveries

    def create_topic(self, name, partitions):
        self.topics.setdefault(name, [[] for _ in range(partitions)])

    def append(self, topic, partition, key, value, headers=None):
        log = self.topics[topic][partition]
        message = FakeMessage(topic, partition, len(log), key, value, headers)
        log.append(message)
        return message

    def produce(self, topic, values, key, partition=0):
        for value in values:
            self.append(topic, partition, key, value)

    def messages(self, topic):
        return [m for log in self.topics[topic] for m in log]


class FakeConsumer:
    def __init__(self, broker, settings):
        self.broker = broker
        self.group = settings["group.id"]
        self.reset = settings.get("auto.offset.reset", "latest")
        self.positions = {}  # (topic, partition) -> next offset
        self.paused = set()
        self.callbacks = {}
        self.pending = []  # scheduled group events, run by the next consume
        self.polls = 0
        self.closed = False

    # -- group membership ---------------------------------------------------

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        self.topics = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.rebalance()

    def rebalance(self, partitions=None):
        """At the next consume: revoke everything, then assign ``partitions`` (default: all)."""
        if partitions is None:
            partitions = sorted({p for t in self.topics for p in range(len(self.broker.topics[t]))})
        self.pending += [("revoke", None), ("assign", partitions)]

    def lose(self):
        self.pending.append(("lost", None))

    def _run_pending(self):
        events, self.pending = self.pending, []
        for kind, partitions in events:
            if kind == "assign":
                tps = [TopicPartition(t, p) for t in self.topics for p in partitions]
                self._call("assign", tps)
                if not self.positions:  # confluent-kafka assigns when the callback did not
                    self.assign(tps)
            else:
                current = self.assignment()
                if current:
                    self._call(kind if self.callbacks.get(kind) else "revoke", current)
                self.positions, self.paused = {}, set()

    def _call(self, kind, tps):
        callback = self.callbacks.get(kind)
        if callback is not None:
            callback(self, tps)

    # -- consuming ----------------------------------------------------------

    def consume(self, num_messages=1, timeout=-1):
        if self.closed:
            raise RuntimeError("Consumer closed")
        self.polls += 1
        self._run_pending()
        if self.broker.consume_errors:
            errors, self.broker.consume_errors = self.broker.consume_errors, []
            return [FakeMessage(None, None, None, None, None, None, e) for e in errors]
        out = []
        for place, position in sorted(self.positions.items()):
            if place in self.paused:
                continue
            log = self.broker.topics[place[0]][place[1]]
            taken = log[position : position + num_messages - len(out)]
            out += taken
            self.positions[place] = position + len(taken)
            if len(out) >= num_messages:
                break
        return out

    def assign(self, tps):
        for tp in tps:
            self.positions[(tp.topic, tp.partition)] = self._resolve(tp)

    def _resolve(self, tp):
        log = self.broker.topics[tp.topic][tp.partition]
        offset = tp.offset
        if offset == OFFSET_INVALID:
            offset = self.broker.committed.get((self.group, tp.topic, tp.partition), OFFSET_INVALID)
        if offset == OFFSET_INVALID:
            offset = OFFSET_BEGINNING if self.reset == "earliest" else OFFSET_END
        if offset == OFFSET_BEGINNING:
            return 0
        if offset == OFFSET_END:
            return len(log)
        return offset

    def assignment(self):
        return [TopicPartition(t, p) for t, p in sorted(self.positions)]

    def pause(self, tps):
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps):
        self.paused -= {(tp.topic, tp.partition) for tp in tps}

    def seek(self, tp):
        if (tp.topic, tp.partition) not in self.positions:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))
        self.positions[(tp.topic, tp.partition)] = self._resolve(tp)

    def commit(self, offsets=None, asynchronous=True):
        for tp in offsets:
            self.broker.committed[(self.group, tp.topic, tp.partition)] = tp.offset

    def committed(self, partitions, timeout=None):
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.broker.committed.get((self.group, tp.topic, tp.partition), OFFSET_INVALID),
            )
            for tp in partitions
        ]

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return 0, len(self.broker.topics[partition.topic][partition.partition])

    def close(self):
        if not self.closed:
            self.pending.append(("revoke", None))
            self._run_pending()
            self.closed = True


class FakeProducer:
    def __init__(self, broker, settings):
        self.broker = broker
        self.limit = int(settings.get("message.max.bytes", 1_000_000))
        self.queue = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None, partition=None):
        size = len(value or b"") + len(key or b"")
        size += sum(len(name) + len(item) for name, item in headers or [])
        if size > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queue.append((topic, partition, key, value, headers, on_delivery))

    def poll(self, timeout=None):
        return self._deliver()

    def flush(self, timeout=None):
        self._deliver()
        return len(self.queue)

    def __len__(self):
        return len(self.queue)

    def _deliver(self):
        if self.broker.down:
            return 0
        queue, self.queue = self.queue, []
        for topic, partition, key, value, headers, callback in queue:
            if self.broker.delivery_failures:
                error, message = self.broker.delivery_failures.pop(0), None
            else:
                if partition is None or partition < 0:
                    partition = zlib.crc32(key or b"") % len(self.broker.topics[topic])
                error, message = None, self.broker.append(topic, partition, key, value, headers)
            if callback is not None:
                callback(error, message)
        return len(queue)


EVERYTHING = None


class FlakyRedis(redis.Redis):
    """A redis-py client that raises ConnectionError while "down", as a dead server makes it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failing = set()  # command names; EVERYTHING (None) fails every command
        self.lose_reply = set()  # commands that run, then lose their reply once

    def down(self, *commands):
        self.failing = {c.upper() for c in commands} if commands else EVERYTHING

    def up(self):
        self.failing = set()

    def check(self, name):
        if self.failing is EVERYTHING or name.upper() in self.failing:
            raise redis.ConnectionError("Error 111 connecting to Redis. Connection refused.")

    def execute_command(self, *args, **options):
        name = str(args[0]).upper()
        self.check(name)
        result = super().execute_command(*args, **options)
        if name in self.lose_reply:
            self.lose_reply.discard(name)
            raise redis.ConnectionError("Connection closed by server.")
        return result

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        run = pipe.execute

        def execute(raise_on_error=True):
            for args, _ in pipe.command_stack:
                self.check(str(args[0]))
            return run(raise_on_error)

        pipe.execute = execute
        return pipe


def fake_config(
    tmp_path,
    redis_url,
    prefix,
    *,
    batch_size=500,
    partitions=2,
    window=1000,
    routing="by_key",
    labels=None,
    baseline=None,
    model_options=None,
    others=None,
):
    """A config for the fake broker: fixed topic names, a key prefix of its own.

    ``labels`` is the model's labels section; ``baseline`` a profile to use
    instead of the fraud model's; ``model_options`` more keys of the model's
    section (``versions``, ``segments``, ...). ``others`` adds models: each
    a baseline profile, or a (profile, more keys of its section) pair.
    """
    from driftstream.config import parse_config

    profile = baseline
    baseline = tmp_path / f"{prefix}-baseline.json"
    baseline.write_bytes(_baseline_json() if profile is None else profile.to_json())
    model_id = "fraud-detector" if profile is None else profile.model_id
    model = {"baseline": str(baseline), "window": {"size": window}}
    if labels is not None:
        model["labels"] = labels
    model.update(model_options or {})
    models = {model_id: model}
    for other_id, other in (others or {}).items():
        profile, options = other if isinstance(other, tuple) else (other, {})
        path = tmp_path / f"{prefix}-{other_id}-baseline.json"
        path.write_bytes(profile.to_json())
        models[other_id] = {"baseline": str(path), "window": {"size": window}, **options}
    config = parse_config(
        {
            "models": models,
            "kafka": {
                "client": {"bootstrap.servers": "fake:9092"},
                "group_id": f"{prefix}-group",
                "topics": {
                    "predictions": "in.predictions",
                    "features": "in.features",
                    "labels": "in.labels",
                    "alerts": "out.alerts",
                    "dlq": "out.dlq",
                },
                "partitions": partitions,
                "batch_size": batch_size,
                "batch_timeout_seconds": 0.01,
                "routing": routing,
            },
            "redis": {"url": redis_url, "key_prefix": prefix},
            "metrics": {"port": 0},
        }
    )
    return config


def fake_broker(config):
    broker = FakeBroker()
    topics = config.kafka.topics
    for name in (topics.predictions, topics.features, topics.labels, topics.repartition):
        broker.create_topic(name, config.kafka.partitions)
    broker.create_topic(topics.alerts, 1)
    broker.create_topic(topics.dlq, 1)
    return broker


def fake_worker(config, broker, client, **options):
    """A Worker on the fake broker; retries are due at once unless a backoff is given."""
    from prometheus_client import CollectorRegistry
    from redis.backoff import NoBackoff

    from driftstream.runtime.metrics import Metrics
    from driftstream.runtime.models import load_models
    from driftstream.runtime.worker import Worker

    options.setdefault("backoff", NoBackoff())
    metrics = Metrics(CollectorRegistry(), max_features=config.limits.max_features)
    return Worker(
        config,
        load_models(config),
        redis_client=client,
        metrics=metrics,
        consumer_factory=lambda settings: FakeConsumer(broker, settings),
        producer_factory=lambda settings: FakeProducer(broker, settings),
        **options,
    )


def run_stopping(config, broker, client, total, stops=()):
    """Run workers until ``total`` records are committed, replacing the worker at each of ``stops``.

    Each worker closes cleanly before the next starts, as a restart would.
    Returns every worker's metrics, in order.
    """
    done, metrics = 0, []
    for limit in (*stops, total):
        worker = fake_worker(config, broker, client)
        worker.start()
        for _ in range(2000):
            if done + worker.processed >= limit:
                break
            worker.step()
        assert worker.close()
        done += worker.processed
        metrics.append(worker.metrics)
    return metrics


def published(config, broker):
    """The alert events on the alerts topic, decoded."""
    import orjson

    return [orjson.loads(m.value()) for m in broker.messages(config.kafka.topics.alerts)]


_BASELINE = []


def _baseline_json():
    if not _BASELINE:
        from driftstream.core.baseline import build_profile
        from driftstream.synthetic import frame

        profile = build_profile(
            frame(20_000, seed=1),
            model_id="fraud-detector",
            prediction="prediction",
            score="score",
            target="label",
            positive="fraud",
        )
        _BASELINE.append(profile.to_json())
    return _BASELINE[0]
