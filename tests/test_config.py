from pathlib import Path

import pytest
import yaml

from driftstream.config import (
    ConfigError,
    check_client_settings,
    check_redis_url,
    load_config,
    monitor_settings,
    parse_config,
    read_baseline,
)
from driftstream.core.baseline import build_profile
from driftstream.synthetic import frame

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def baseline_file(tmp_path):
    data = frame(5000, seed=3)
    profile = build_profile(
        data, model_id="fraud-detector", prediction="prediction", score="score", target="label"
    )
    path = tmp_path / "baselines" / "fraud-detector.json"
    path.parent.mkdir()
    path.write_bytes(profile.to_json())
    return path


def write(tmp_path, data):
    path = tmp_path / "conf" / "driftstream.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(data):
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "c.yaml")
    return str(caught.value)


def test_the_shipped_example_config_is_valid(baseline_file, tmp_path):
    example = yaml.safe_load((REPO / "config" / "driftstream.yaml").read_text())
    example["models"]["fraud-detector"]["baseline"] = str(baseline_file)
    config = load_config(write(tmp_path, example))
    model = config.models["fraud-detector"]
    settings = monitor_settings("fraud-detector", model, read_baseline("fraud-detector", model))
    features = {f.name: f for f in settings.features}
    assert {s.name for s in features["amount"].statistics} == {"psi", "wasserstein"}
    psi = next(s for s in features["amount"].statistics if s.name == "psi")
    assert (psi.threshold, psi.critical) == (0.15, 0.3)
    assert features["items"].detectors == ("adwin",)
    assert features["country"].detectors == ()
    assert "__score__" in features and "__prediction__" in features
    assert settings.adwin["delta"] == 1e-5


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"models": {}}, "models: "),
        ({"modles": {}}, "modles: Extra inputs are not permitted"),
        ({"models": {"m": {}}}, "models.m.baseline: Field required"),
        ({"models": {"m": {"baseline": "b", "window": {"size": 0}}}}, "models.m.window.size"),
        (
            {"models": {"m": {"baseline": "b", "window": {"kind": "hourly"}}}},
            "models.m.window.kind",
        ),
        (
            {"models": {"m": {"baseline": "b", "detectors": {"adwin": {"delta": 2}}}}},
            "models.m.detectors.adwin.delta",
        ),
        (
            {"models": {"m": {"baseline": "b", "features": {"x": {"statistics": {"psy": {}}}}}}},
            "models.m.features.x.statistics.psy",
        ),
        (
            {"models": {"m": {"baseline": "b", "features": {"x": {"detectors": ["kalman"]}}}}},
            "models.m.features.x.detectors.0",
        ),
        ({"version": 2, "models": {"m": {"baseline": "b"}}}, "version: "),
    ],
)
def test_bad_config_names_the_bad_key(data, where):
    message = error_of(data)
    assert message.startswith("c.yaml: ")
    assert where in message


def test_feature_overrides_are_checked_against_the_baseline(baseline_file, tmp_path):
    def settings_for(features):
        path = write(
            tmp_path,
            {"models": {"fraud-detector": {"baseline": str(baseline_file), "features": features}}},
        )
        model = load_config(path).models["fraud-detector"]
        return monitor_settings("fraud-detector", model, read_baseline("fraud-detector", model))

    with pytest.raises(ConfigError, match=r"features\.amont: not a column of the baseline"):
        settings_for({"amont": {}})
    with pytest.raises(ConfigError, match=r"features\.country\.statistics\.ks: ks does not"):
        settings_for({"country": {"statistics": {"ks": {}}}})
    with pytest.raises(ConfigError, match=r"features\.country\.detectors: detectors need"):
        settings_for({"country": {"detectors": ["adwin"]}})
    with pytest.raises(ConfigError, match=r"features\.amount\.kind: configured categorical"):
        settings_for({"amount": {"kind": "categorical"}})
    settings = settings_for({"device": {"enabled": False}})
    assert "device" not in {f.name for f in settings.features}


def test_baseline_problems_name_the_model_key(tmp_path, baseline_file):
    path = write(tmp_path, {"models": {"fraud-detector": {"baseline": "../nowhere.json"}}})
    model = load_config(path).models["fraud-detector"]
    with pytest.raises(ConfigError, match=r"models\.fraud-detector\.baseline: cannot read"):
        read_baseline("fraud-detector", model)
    path = write(tmp_path, {"models": {"other": {"baseline": str(baseline_file)}}})
    model = load_config(path).models["other"]
    with pytest.raises(ConfigError, match="baseline of model 'fraud-detector'"):
        read_baseline("other", model)


def test_relative_baseline_paths_follow_the_config_file(tmp_path):
    path = write(tmp_path, {"models": {"m": {"baseline": "../baselines/m.json"}}})
    assert load_config(path).models["m"].baseline == path.parent / "../baselines/m.json"


def test_unreadable_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_models_are_frozen(baseline_file, tmp_path):
    config = load_config(write(tmp_path, {"models": {"m": {"baseline": "b.json"}}}))
    with pytest.raises(ValueError, match="frozen"):
        config.models["m"].window.size = 10  # type: ignore[misc]


def test_runtime_sections_default_and_keep_secrets_out_of_reprs():
    config = parse_config(
        {
            "models": {"m": {"baseline": "b.json"}},
            "kafka": {
                "client": {
                    "bootstrap.servers": "k:9092",
                    "sasl.password": "hunter2",
                    "security.protocol": "SASL_SSL",
                }
            },
            "redis": {"url": "redis://:pw@r:6379/0"},
        }
    )
    assert "hunter2" not in repr(config) and "pw@" not in repr(config)
    settings = config.kafka.client_settings()
    assert settings == {
        "bootstrap.servers": "k:9092",
        "sasl.password": "hunter2",
        "security.protocol": "SASL_SSL",
    }
    assert config.redis.url.get_secret_value() == "redis://:pw@r:6379/0"
    assert config.kafka.topics.alerts == "driftstream.alerts"
    assert config.kafka.batch_size == 20_000 and config.metrics.host == "127.0.0.1"


def test_runtime_section_errors_name_the_key():
    assert "kafka.batch_size" in error_of(
        {"models": {"m": {"baseline": "b"}}, "kafka": {"batch_size": 0}}
    )
    assert "redis.key_prefix" in error_of(
        {"models": {"m": {"baseline": "b"}}, "redis": {"key_prefix": "a b"}}
    )
    assert "kafka.topics.alert" in error_of(
        {"models": {"m": {"baseline": "b"}}, "kafka": {"topics": {"alert": "x"}}}
    )


def client_error(client):
    config = parse_config({"models": {"m": {"baseline": "b.json"}}, "kafka": {"client": client}})
    with pytest.raises(ConfigError) as caught:
        check_client_settings(config.kafka)
    return str(caught.value)


BROKER = {"bootstrap.servers": "k:9092"}


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            {"bootstrap.server": "k:9092"},
            'kafka.client.bootstrap.server: No such configuration property: "bootstrap.server"',
        ),
        (
            {**BROKER, "security.protocol": "bogus"},
            'kafka.client.security.protocol: Invalid value "bogus" for configuration property',
        ),
        (
            {**BROKER, "security.protocol": "SASL_SSL", "sasl.mechanism": "FOO"},
            "kafka.client.sasl.mechanism: Unsupported SASL mechanism: FOO",
        ),
        # librdkafka reports linger.ms under its canonical name; the user's key is named
        ({**BROKER, "linger.ms": -5}, "kafka.client.linger.ms: "),
        # a consumer-only key never reaches a producer, so the consumer must check it
        ({**BROKER, "session.timeout.ms": "soon"}, "kafka.client.session.timeout.ms: Invalid"),
        (
            {**BROKER, "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
            "kafka.client: sasl.username and sasl.password must be set",
        ),
        ({"security.protocol": "SSL"}, "kafka.client.bootstrap.servers: missing"),
    ],
)
def test_client_settings_librdkafka_refuses_are_named(client, expected):
    assert expected in client_error(client)


def test_client_secrets_stay_out_of_client_errors():
    message = client_error({**BROKER, "sasl.password": "hunter2", "bootstrap.server": "x"})
    assert "bootstrap.server" in message and "hunter2" not in message


def test_valid_client_settings_pass():
    config = parse_config(
        {
            "models": {"m": {"baseline": "b.json"}},
            "kafka": {
                "client": {
                    **BROKER,
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "drift",
                    "sasl.password": "hunter2",
                    "client.id": "driftstream-1",
                    "session.timeout.ms": 6000,
                    "enable.idempotence": True,
                    "linger.ms": 5,
                }
            },
        }
    )
    check_client_settings(config.kafka)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("redis://:pw@r:abc/0", "redis.url: Port could not be cast"), ("http://r:6379", "scheme")],
)
def test_an_unusable_redis_url_is_named(url, expected):
    config = parse_config({"models": {"m": {"baseline": "b.json"}}, "redis": {"url": url}})
    with pytest.raises(ConfigError, match=expected) as caught:
        check_redis_url(config.redis)
    assert "pw" not in str(caught.value)
    check_redis_url(parse_config({"models": {"m": {"baseline": "b.json"}}}).redis)


def test_label_settings_are_checked_against_the_baseline(baseline_file, tmp_path):
    from driftstream.runtime.models import label_spec

    def spec(labels):
        path = write(
            tmp_path,
            {"models": {"fraud-detector": {"baseline": str(baseline_file), "labels": labels}}},
        )
        model = load_config(path).models["fraud-detector"]
        baseline = read_baseline("fraud-detector", model)
        settings = monitor_settings("fraud-detector", model, baseline)
        return label_spec("fraud-detector", model.labels, baseline, settings)

    # The fixture's baseline has no positive class ("fraud"/"ok"): multi-class metrics only.
    made = spec({})
    assert made.performance.task == "classification" and made.reference is not None
    with pytest.raises(ConfigError, match=r"labels\.metrics\.mae: not a classification metric"):
        spec({"metrics": {"mae": {}}})
    with pytest.raises(ConfigError, match=r"labels\.wait_seconds: .* longer than ttl_seconds"):
        spec({"wait_seconds": 100, "ttl_seconds": 10})
    with pytest.raises(ConfigError, match=r"labels\.positive: 'fraud', but the baseline"):
        spec({"positive": "fraud"})
    with pytest.raises(ConfigError, match=r"labels\.window_seconds: ttl_seconds spans"):
        spec({"window_seconds": 1, "ttl_seconds": 604800})
    off = spec({"metrics": {"log_loss": {"enabled": False}, "accuracy": {"z": 3}}})
    names = {m.name: m for m in off.performance.judged_metrics()}
    assert "log_loss" not in names and names["accuracy"].z == 3
    assert error_of({"models": {"m": {"baseline": "b.json", "labels": {"ttl_seconds": 0}}}})
