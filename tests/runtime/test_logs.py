"""Log lines: the JSON format, and what the worker says about its work."""

import io
import logging
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
import redis
from fakes import FlakyRedis, fake_broker, fake_config, fake_worker, published
from pipeline import events, produce, read_topic, wait_for, write_config

from driftstream.runtime.logs import JsonFormatter, configure

pytestmark = pytest.mark.integration

KEY = b"fraud-detector"
SCRIPT = shutil.which("driftstream", path=str(Path(sys.executable).parent))


def json_lines(text):
    """Each line parsed as JSON: any line that is not one fails the test."""
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_the_fields_and_the_structured_extras():
    logger = logging.getLogger("driftstream.test.json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.warning("claimed partitions %s", [0, 1], extra={"partitions": [0, 1]})
        logger.info("a path %s", Path("/x"), extra={"where": Path("/x"), "rate": 1.5})
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    first, second, third = json_lines(stream.getvalue())
    assert first["level"] == "WARNING"
    assert first["logger"] == "driftstream.test.json"
    assert first["message"] == "claimed partitions [0, 1]"
    assert first["partitions"] == [0, 1]
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["where"] == "/x" and second["rate"] == 1.5
    assert third["level"] == "ERROR" and "ValueError: boom" in third["exception"]
    for line in (first, second, third):
        assert {"ts", "level", "logger", "message"} <= set(line)
        assert "args" not in line and "msg" not in line and "levelno" not in line


def test_configure_switches_its_own_format_and_respects_others():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    stream = io.StringIO()
    try:
        assert not configure("INFO", "json", stream)  # pytest's handlers are there: left alone
        assert root.handlers == saved[1]
        root.handlers[:] = []
        assert configure("DEBUG", "json", stream)
        logging.getLogger("driftstream.x").debug("one %d", 1)
        assert configure("WARNING", "text", stream)
        assert len(root.handlers) == 1
        logging.getLogger("driftstream.x").info("not shown")
        logging.getLogger("driftstream.x").warning("two")
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    first, second = stream.getvalue().splitlines()
    assert orjson.loads(first)["message"] == "one 1"
    assert second.endswith("WARNING driftstream.x: two")


def messages(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


def drift_worker(tmp_path, redis_url, unique, *, routing="by_key", progress=5.0, client=None):
    config = fake_config(tmp_path, redis_url, unique, routing=routing)
    metrics = config.metrics.model_copy(update={"progress_seconds": progress})
    config = config.model_copy(update={"metrics": metrics})
    broker = fake_broker(config)
    for value in events(3000, 3000, seed=5):
        broker.append(config.kafka.topics.predictions, 0, KEY, value)
    broker.append(config.kafka.topics.predictions, 1, KEY, b"{not json")
    now = [0.0]
    worker = fake_worker(
        config, broker, client or redis.Redis.from_url(redis_url), clock=lambda: now[0]
    )
    return config, broker, worker, now


def run_to_the_end(worker, broker, config, now):
    """``run`` until every record is committed and relayed; each iteration is a second."""
    stop = threading.Event()
    topics = config.kafka.topics

    def on_step(w):
        now[0] += 1.0
        # With routing by repartition, each input record is read twice.
        total = len(broker.messages(topics.predictions)) + len(broker.messages(topics.repartition))
        if w.processed >= total and w.pending_outbox() == 0:
            stop.set()

    assert worker.run(stop, on_step)


def test_the_worker_logs_claims_alerts_and_progress(tmp_path, redis_url, unique, caplog):
    config, broker, worker, now = drift_worker(tmp_path, redis_url, unique)
    with caplog.at_level(logging.INFO, logger="driftstream"):
        run_to_the_end(worker, broker, config, now)

    claimed = messages(caplog, "claimed partitions")
    assert claimed[-1].getMessage() == "claimed partitions [0, 1]"
    assert claimed[-1].partitions == [0, 1]
    released = messages(caplog, "released partitions")
    assert released and released[-1].partitions == [0, 1]

    alerts = published(config, broker)
    assert alerts, "the drifted input must raise alerts"
    lines = messages(caplog, "published:")
    assert sorted(r.alert_id for r in lines) == sorted(a["alert_id"] for a in alerts)
    by_id = {a["alert_id"]: a for a in alerts}
    for record in lines:
        alert = by_id[record.alert_id]
        assert (record.kind, record.model_id, record.feature) == (
            alert["kind"],
            alert["model_id"],
            alert["feature"],
        )
        assert record.alert_id in record.getMessage() and alert["kind"] in record.getMessage()

    progress = messages(caplog, "progress:")
    assert progress, "a run of many seconds logs progress lines"
    last = progress[-1]
    assert last.events <= worker.processed
    assert last.partitions == [0, 1]
    assert last.alerts_published <= len(alerts)
    assert last.dead_letters <= 1
    # Each line's rate covers its 5 s since the one before (rounded to 0.1 event/s).
    rated = sum(r.events_per_second * 5.0 for r in progress)
    assert rated == pytest.approx(last.events, abs=0.25 * len(progress))
    for record in progress:
        assert {"lag_messages", "outbox_entries"} <= set(vars(record))
    # A line every 5 s of the worker's clock (a second per iteration), not one per batch.
    assert len(progress) <= now[0] / 5.0


def test_progress_lines_can_be_turned_off(tmp_path, redis_url, unique, caplog):
    config, broker, worker, now = drift_worker(tmp_path, redis_url, unique, progress=0)
    with caplog.at_level(logging.INFO, logger="driftstream"):
        run_to_the_end(worker, broker, config, now)
    assert not messages(caplog, "progress:")
    assert messages(caplog, "published:")


def test_forwarded_events_are_neither_alerts_nor_alert_lines(tmp_path, redis_url, unique, caplog):
    config, broker, worker, now = drift_worker(tmp_path, redis_url, unique, routing="repartition")
    with caplog.at_level(logging.INFO, logger="driftstream"):
        run_to_the_end(worker, broker, config, now)
    alerts = published(config, broker)
    assert alerts
    assert len(messages(caplog, "published:")) == len(alerts)
    registry = worker.metrics.registry
    kinds = {
        sample.labels["kind"]
        for family in registry.collect()
        if family.name == "driftstream_alerts_published"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert "" not in kinds


def test_every_redis_retry_is_logged(tmp_path, redis_url, unique, caplog):
    client = FlakyRedis.from_url(redis_url)
    _, _, worker, _ = drift_worker(tmp_path, redis_url, unique, client=client)
    worker.start()
    with caplog.at_level(logging.INFO, logger="driftstream"):
        worker.step()
        client.down()
        for _ in range(6):
            worker.step()
        client.up()
        for _ in range(3):
            worker.step()
    failures = sum(
        sample.value
        for family in worker.metrics.registry.collect()
        if family.name == "driftstream_store_retries"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    worker.close()
    assert len(messages(caplog, "Redis is unavailable")) == 1  # the first failure: a warning
    retries = messages(caplog, "Redis retry ")
    assert len(retries) == failures - 1 >= 1  # then one line for every retry that failed
    assert [r.retry for r in retries] == list(range(1, len(retries) + 1))
    assert len(messages(caplog, "Redis is back")) == 1


def test_run_logs_json_lines(tmp_path, kafka_bootstrap, redis_url, unique):
    """`driftstream run --log-format json`: every stderr line is a JSON object."""
    path, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique, window=1000)
    produce(kafka_bootstrap, config.kafka.topics.predictions, events(3000, 3000, seed=5), KEY)
    process = subprocess.Popen(
        [SCRIPT, "run", "--config", str(path), "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: read_topic(kafka_bootstrap, config.kafka.topics.alerts, quiet=0.2),
            120,
            "alerts",
        )
        wait_for(lambda: any("published:" in line for line in lines), 30, "an alert line")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        reader.join(10)
    parsed = json_lines("".join(lines))
    assert code == 0, lines[-10:]
    for line in parsed:
        assert {"ts", "level", "logger", "message"} <= set(line), line
    claimed = [p for p in parsed if p["message"].startswith("claimed partitions")]
    assert claimed and claimed[-1]["partitions"] == [0, 1]
    alert_lines = [p for p in parsed if "published:" in p["message"]]
    on_topic = read_topic(kafka_bootstrap, config.kafka.topics.alerts)
    assert {p["alert_id"] for p in alert_lines} <= {
        orjson.loads(m.value())["alert_id"] for m in on_topic
    }
    assert all(p["kind"] and p["model_id"] == "fraud-detector" for p in alert_lines)
    assert any(p["message"].startswith("stopped cleanly") for p in parsed)
