import math
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from driftstream.contract import REASONS
from driftstream.runtime.alerts import ALERT_KINDS, SEVERITIES
from driftstream.runtime.metrics import DURATION_BUCKETS_SECONDS, Metrics, serve

STAT = ("psi", "baseline")


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return Metrics(registry, max_features=3)


def stats(*features, value=0.5):
    return {(feature, *STAT): value for feature in features}


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_counters_carry_their_labels(registry, metrics):
    metrics.events_consumed.labels(model="churn", topic="preds").inc(5)
    metrics.invalid_events.labels(reason="bad_json", topic="preds").inc()
    metrics.alerts_published.labels(kind="drift", severity="warning").inc(2)
    metrics.dead_letters_published.labels(reason="non_finite").inc()
    metrics.fenced.inc()
    metrics.store_retries.labels(operation="commit").inc(2)
    metrics.state_lost.inc()
    metrics.state_quarantined.labels(model="churn").inc()
    metrics.relay_failures.labels(error="MSG_SIZE_TOO_LARGE").inc()
    metrics.consume_errors.labels(error="_TRANSPORT").inc()
    metrics.dead_letters_truncated.inc()

    assert sample(registry, "driftstream_events_consumed_total", model="churn", topic="preds") == 5
    assert (
        sample(registry, "driftstream_invalid_events_total", reason="bad_json", topic="preds") == 1
    )
    assert (
        sample(registry, "driftstream_alerts_published_total", kind="drift", severity="warning")
        == 2
    )
    assert sample(registry, "driftstream_dead_letters_published_total", reason="non_finite") == 1
    assert sample(registry, "driftstream_fenced_commits_total") == 1
    assert sample(registry, "driftstream_store_retries_total", operation="commit") == 2
    assert sample(registry, "driftstream_store_state_lost_total") == 1
    assert sample(registry, "driftstream_state_quarantined_total", model="churn") == 1
    assert sample(registry, "driftstream_relay_failures_total", error="MSG_SIZE_TOO_LARGE") == 1
    assert sample(registry, "driftstream_consume_errors_total", error="_TRANSPORT") == 1
    assert sample(registry, "driftstream_dead_letters_truncated_total") == 1


def test_alert_and_dead_letter_series_exist_at_zero_before_the_first(registry, metrics):
    # increase() and rate() cannot see a series' first step, so a counter that
    # appeared at 1 would hide the first critical alert from the rules.
    for kind in ALERT_KINDS:
        for severity in SEVERITIES:
            labels = {"kind": kind, "severity": severity}
            assert sample(registry, "driftstream_alerts_published_total", **labels) == 0
    for reason in REASONS:
        assert sample(registry, "driftstream_dead_letters_published_total", reason=reason) == 0


def test_gauges_carry_their_labels(registry, metrics):
    metrics.consumer_lag.labels(topic="preds", partition="2").set(42)
    metrics.outbox_entries.labels(partition="2").set(3)
    metrics.partitions_owned.set(6)
    metrics.store_up.set(0)

    assert sample(registry, "driftstream_consumer_lag_messages", topic="preds", partition="2") == 42
    assert sample(registry, "driftstream_outbox_entries", partition="2") == 3
    assert sample(registry, "driftstream_partitions_owned") == 6
    assert sample(registry, "driftstream_store_up") == 0


def test_exposition_declares_every_metric_with_its_type(registry, metrics):
    text = generate_latest(registry).decode()

    for name, kind in [
        ("driftstream_events_consumed_total", "counter"),
        ("driftstream_invalid_events_total", "counter"),
        ("driftstream_batch_processing_seconds", "histogram"),
        ("driftstream_state_commit_seconds", "histogram"),
        ("driftstream_consumer_lag_messages", "gauge"),
        ("driftstream_drift_statistic", "gauge"),
        ("driftstream_alerts_published_total", "counter"),
        ("driftstream_dead_letters_published_total", "counter"),
        ("driftstream_outbox_entries", "gauge"),
        ("driftstream_partitions_owned", "gauge"),
        ("driftstream_fenced_commits_total", "counter"),
        ("driftstream_metric_series_dropped_total", "counter"),
        ("driftstream_consume_errors_total", "counter"),
        ("driftstream_store_up", "gauge"),
        ("driftstream_store_retries_total", "counter"),
        ("driftstream_store_state_lost_total", "counter"),
        ("driftstream_state_quarantined_total", "counter"),
        ("driftstream_dead_letters_truncated_total", "counter"),
        ("driftstream_relay_failures_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text


@pytest.mark.parametrize(
    ("attribute", "name"),
    [
        ("batch_seconds", "driftstream_batch_processing_seconds"),
        ("commit_seconds", "driftstream_state_commit_seconds"),
    ],
)
def test_histograms_bucket_durations_from_a_millisecond_to_ten_seconds(
    registry, metrics, attribute, name
):
    histogram = getattr(metrics, attribute)
    for seconds in (0.0004, 0.003, 0.2, 7.0, 30.0):
        histogram.observe(seconds)

    assert DURATION_BUCKETS_SECONDS[0] == 0.001
    assert DURATION_BUCKETS_SECONDS[-1] == 10.0
    assert sample(registry, f"{name}_bucket", le="0.001") == 1
    assert sample(registry, f"{name}_bucket", le="0.005") == 2
    assert sample(registry, f"{name}_bucket", le="0.25") == 3
    assert sample(registry, f"{name}_bucket", le="10.0") == 4
    assert sample(registry, f"{name}_bucket", le="+Inf") == 5
    assert sample(registry, f"{name}_count") == 5
    assert sample(registry, f"{name}_sum") == pytest.approx(37.2034)


def test_statistics_become_labelled_gauges_and_nan_is_skipped(registry, metrics):
    metrics.observe_statistics(
        "churn",
        {
            ("age", "psi", "baseline"): 0.12,
            ("age", "ks", "previous_window"): 0.3,
            ("city", "js", "baseline"): math.nan,
        },
    )

    def stat(feature, statistic, reference):
        return sample(
            registry,
            "driftstream_drift_statistic",
            model="churn",
            version="",
            segment="",
            feature=feature,
            statistic=statistic,
            reference=reference,
        )

    assert stat("age", "psi", "baseline") == 0.12
    assert stat("age", "ks", "previous_window") == 0.3
    assert stat("city", "js", "baseline") is None

    metrics.observe_statistics("churn", {("age", "psi", "baseline"): math.nan})
    assert stat("age", "psi", "baseline") == 0.12, "NaN must not overwrite the last value"


def test_feature_series_are_capped_per_model_and_the_rest_counted(registry, metrics):
    metrics.observe_statistics("churn", stats("a", "b", "c", "d", "e"))
    metrics.observe_statistics("churn", stats("a", "e", value=0.9))
    metrics.observe_statistics("fraud", stats("x", "y", "z"))

    text = generate_latest(registry).decode()
    churn_series = [
        line
        for line in text.splitlines()
        if line.startswith("driftstream_drift_statistic{") and 'model="churn"' in line
    ]
    assert len(churn_series) == 3
    stat_a = {
        "model": "churn",
        "version": "",
        "segment": "",
        "feature": "a",
        "statistic": "psi",
        "reference": "baseline",
    }
    assert registry.get_sample_value("driftstream_drift_statistic", stat_a) == 0.9
    assert sample(registry, "driftstream_metric_series_dropped_total", model="churn") == 3
    assert sample(registry, "driftstream_metric_series_dropped_total", model="fraud") is None


def test_statistics_of_a_version_and_segment_get_their_own_series(registry, metrics):
    metrics.observe_statistics("churn", {("age", "psi", "baseline"): 0.1})
    metrics.observe_statistics("churn", {("age", "psi", "baseline"): 0.4}, "v2", "country=US")
    labels = {"model": "churn", "feature": "age", "statistic": "psi", "reference": "baseline"}
    whole = {**labels, "version": "", "segment": ""}
    canary = {**labels, "version": "v2", "segment": "country=US"}
    assert registry.get_sample_value("driftstream_drift_statistic", whole) == 0.1
    assert registry.get_sample_value("driftstream_drift_statistic", canary) == 0.4


def test_nan_does_not_use_up_the_feature_budget(registry):
    metrics = Metrics(registry, max_features=1)
    metrics.observe_statistics("churn", {("a", "psi", "baseline"): math.nan})
    metrics.observe_statistics("churn", stats("b"))

    assert sample(registry, "driftstream_metric_series_dropped_total", model="churn") is None


def test_max_features_must_be_positive(registry):
    with pytest.raises(ValueError, match="max_features"):
        Metrics(registry, max_features=0)


def test_two_registries_do_not_clash():
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).partitions_owned.set(1)
    Metrics(second).partitions_owned.set(2)

    assert first.get_sample_value("driftstream_partitions_owned") == 1
    assert second.get_sample_value("driftstream_partitions_owned") == 2


def test_one_registry_holds_one_metrics(registry, metrics):
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry)


def test_importing_registers_nothing_globally():
    script = (
        "from prometheus_client import REGISTRY\n"
        "before = {m.name for m in REGISTRY.collect()}\n"
        "import driftstream.runtime.metrics\n"
        "after = {m.name for m in REGISTRY.collect()}\n"
        "assert before == after, after - before\n"
        "assert not any(name.startswith('driftstream') for name in after)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_serve_on_port_zero_exposes_the_registry_over_http(registry, metrics):
    metrics.events_consumed.labels(model="churn", topic="preds").inc(7)

    with serve(registry, "127.0.0.1", 0) as server:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            body = r.read().decode()
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")

    assert 'driftstream_events_consumed_total{model="churn",topic="preds"} 7.0' in body
    assert "driftstream_partitions_owned" in body
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_serve_names_the_address_it_could_not_bind(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}: .*in use"):
            serve(registry, "127.0.0.1", port)


def test_observe_many_files_values_as_observe_does():
    import numpy as np
    from prometheus_client import Histogram

    from driftstream.runtime.metrics import LABEL_DELAY_BUCKETS_SECONDS, observe_many

    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.exponential(3600, 5000), np.array(LABEL_DELAY_BUCKETS_SECONDS), [0.0, 1e9]]
    )
    one, many = CollectorRegistry(), CollectorRegistry()
    for registry in (one, many):
        Histogram("delay_seconds", "d", buckets=LABEL_DELAY_BUCKETS_SECONDS, registry=registry)
    single = one._names_to_collectors["delay_seconds"]
    for value in values.tolist():
        single.observe(value)
    observe_many(many._names_to_collectors["delay_seconds"], values)

    def samples(registry):
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    found, expected = samples(many), samples(one)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-12), key
