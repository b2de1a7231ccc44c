"""Config keys from DRIFTSTREAM__ environment variables, and secrets read from files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from pydantic import SecretStr
from redis.connection import parse_url

from driftstream.cli import main
from driftstream.config import (
    ConfigError,
    check_client_settings,
    load_config,
    monitor_settings,
    read_baseline,
)
from driftstream.core.baseline import build_profile
from driftstream.replay.sweep import load_settings, parse_set
from driftstream.runtime.app import connect_redis
from driftstream.runtime.services import EmbeddedRedis, find_redis_server
from driftstream.synthetic import frame

SCRIPT = shutil.which("driftstream", path=str(Path(sys.executable).parent))
# Distinctive, so a leak anywhere in an output is found by a substring test.
REDIS_SECRET = "pw/7f@3a:9c"  # characters a URL must percent-encode
SASL_SECRET = "sasl-91b2e4-hush"
MODEL = "fraud-detector"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("baselines") / f"{MODEL}.json"
    profile = build_profile(frame(2000, seed=1), model_id=MODEL, score="score")
    path.write_bytes(profile.to_json())
    return path


def document(baseline, **sections):
    data = {
        "models": {
            MODEL: {
                "baseline": str(baseline),
                "window": {"size": 1000},
                "features": {"amount": {"statistics": {"psi": {"threshold": 0.2}}}},
            }
        },
        "kafka": {
            "client": {"bootstrap.servers": "127.0.0.1:1"},
            "topics": {"predictions": "in.predictions"},
        },
        "redis": {"url": "redis://127.0.0.1:1/0"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def write(tmp_path, data):
    path = tmp_path / "conf" / "driftstream.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config_file(tmp_path, baseline):
    return write(tmp_path, document(baseline))


def secret_file(tmp_path, name, text):
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_variables_override_nested_keys_and_win_over_the_file(config_file):
    env = {
        "DRIFTSTREAM__REDIS__URL": "redis://other:6380/2",
        "DRIFTSTREAM__KAFKA__TOPICS__ALERTS": "fraud.alerts",
        "DRIFTSTREAM__KAFKA__BATCH_SIZE": "500",
        "DRIFTSTREAM__METRICS__PORT": "0",
        "driftstream__kafka__group_id": "names-ignore-case",
        "DRIFTSTREAM_REDIS_URL": "redis://not-ours:1/0",  # one underscore: not a config key
    }
    config = load_config(config_file, env)
    assert config.redis.url.get_secret_value() == "redis://other:6380/2"
    assert config.kafka.topics.alerts == "fraud.alerts"
    assert config.kafka.topics.predictions == "in.predictions"  # the file's, kept
    assert (config.kafka.batch_size, config.metrics.port) == (500, 0)
    assert config.kafka.group_id == "names-ignore-case"
    assert load_config(config_file, {}).kafka.batch_size == 20_000


def test_librdkafka_properties_write_their_dots_as_underscores(config_file):
    env = {
        "DRIFTSTREAM__KAFKA__CLIENT__SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_USERNAME": "drift",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD": SASL_SECRET,
        "DRIFTSTREAM__KAFKA__CLIENT__SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "none",
        "DRIFTSTREAM__KAFKA__CLIENT__LOG_LEVEL": "3",  # librdkafka's own underscore
    }
    config = load_config(config_file, env)
    assert config.kafka.client_settings() == {
        "bootstrap.servers": "127.0.0.1:1",  # the file's
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "drift",
        "sasl.password": SASL_SECRET,
        "ssl.endpoint.identification.algorithm": "none",
        "log_level": "3",
    }
    assert isinstance(config.kafka.client["sasl.password"], SecretStr)
    check_client_settings(config.kafka)  # librdkafka takes every one of them


def test_a_models_keys_are_reached_by_its_id(config_file, baseline):
    env = {
        "DRIFTSTREAM__MODELS__FRAUD_DETECTOR__WINDOW__SIZE": "500",
        "DRIFTSTREAM__MODELS__FRAUD_DETECTOR__SEGMENTS__KEYS": '["country", "device"]',
        # A JSON mapping merges into the file's, and a nested key into its section.
        "DRIFTSTREAM__MODELS__FRAUD_DETECTOR__FEATURES": '{"country": {"enabled": false}}',
        "DRIFTSTREAM__MODELS__FRAUD_DETECTOR__FEATURES__AMOUNT__DETECTORS": '["adwin"]',
        "DRIFTSTREAM__ALERTS__FALSE_ALARMS_PER_DAY": "null",
    }
    config = load_config(config_file, env)
    assert list(config.models) == [MODEL]
    model = config.models[MODEL]
    assert (model.window.size, model.window.min_count) == (500, 200)
    assert model.segments.keys == ["country", "device"]
    assert model.features["amount"].detectors == ["adwin"]
    assert model.features["amount"].statistics["psi"].threshold == 0.2  # the file's
    assert config.alerts.false_alarms_per_day is None
    settings = monitor_settings(MODEL, model, read_baseline(MODEL, model))
    watched = {feature.name for feature in settings.features}
    assert "country" not in watched and "amount" in watched


def test_secret_files_in_the_file_and_in_the_environment(tmp_path, baseline):
    secret_file(tmp_path, "redis", REDIS_SECRET + "\n")
    sasl = secret_file(tmp_path, "sasl", SASL_SECRET + "\r\n")
    # A relative path in the file is taken from the file's folder.
    data = document(baseline, redis={"password_file": "../secrets/redis"})
    data["kafka"]["client"]["ssl.key.password_file"] = str(sasl)
    path = write(tmp_path, data)
    env = {"DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE": str(sasl)}
    config = load_config(path, env)
    settings = config.kafka.client_settings()
    assert settings["sasl.password"] == settings["ssl.key.password"] == SASL_SECRET
    assert isinstance(config.kafka.client["ssl.key.password"], SecretStr)
    assert config.redis.password is not None
    assert config.redis.password.get_secret_value() == REDIS_SECRET
    # Every Redis client reads redis.url: the password is in it, percent-encoded.
    url = config.redis.url.get_secret_value()
    assert parse_url(url)["password"] == REDIS_SECRET
    assert parse_url(url)["host"] == "127.0.0.1"


def test_the_environment_replaces_either_spelling_of_a_secret(tmp_path, baseline):
    data = document(baseline)
    data["kafka"]["client"]["sasl.password_file"] = str(tmp_path / "absent")
    path = write(tmp_path, data)
    env = {"DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD": SASL_SECRET}
    assert load_config(path, env).kafka.client_settings()["sasl.password"] == SASL_SECRET

    data["kafka"]["client"] = {"bootstrap.servers": "k:9092", "sasl.password": "from-the-file"}
    path = write(tmp_path, data)
    sasl = secret_file(tmp_path, "sasl", SASL_SECRET)
    env = {"DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE": str(sasl)}
    assert load_config(path, env).kafka.client_settings()["sasl.password"] == SASL_SECRET

    data["kafka"]["client"]["sasl.password_file"] = str(sasl)
    with pytest.raises(ConfigError, match=r"kafka\.client\.sasl\.password_file: .* keep one"):
        load_config(write(tmp_path, data), {})


def test_redis_password_and_username_replace_the_urls(baseline, tmp_path):
    cases = [
        ({"url": "redis://old-user:old-pw@h:7/1", "password": "new"}, ("old-user", "new")),
        ({"url": "redis://old-user:old-pw@h:7/1", "username": "u"}, ("u", "old-pw")),
        ({"url": "redis://h:7/1", "username": "u", "password": REDIS_SECRET}, ("u", REDIS_SECRET)),
        ({"url": "redis://h:7/1", "password": ""}, (None, None)),
    ]
    for redis_section, (username, password) in cases:
        path = write(tmp_path, document(baseline, redis=redis_section))
        parsed = parse_url(load_config(path, {}).redis.url.get_secret_value())
        assert (parsed.get("username"), parsed.get("password")) == (username, password)
        assert (parsed["host"], parsed["port"], parsed["db"]) == ("h", 7, 1)
    socket = write(tmp_path, document(baseline, redis={"url": "unix:///run/r.sock?db=2"}))
    env = {"DRIFTSTREAM__REDIS__PASSWORD": REDIS_SECRET}
    parsed = parse_url(load_config(socket, env).redis.url.get_secret_value())
    assert (parsed["path"], parsed["password"], parsed["db"]) == ("/run/r.sock", REDIS_SECRET, 2)


def test_secrets_never_show_in_reprs_dumps_or_errors(tmp_path, baseline):
    sasl = secret_file(tmp_path, "sasl", SASL_SECRET)
    env = {
        "DRIFTSTREAM__REDIS__PASSWORD": REDIS_SECRET,
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE": str(sasl),
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_OAUTHBEARER_CONFIG": f"principal=x secret={SASL_SECRET}",
    }
    config = load_config(write(tmp_path, document(baseline)), env)
    for shown in (repr(config), str(config), config.model_dump_json(), repr(config.redis)):
        assert REDIS_SECRET not in shown and SASL_SECRET not in shown
    # A bad value next to the secrets: the message names the key, never a value.
    bad = {**env, "DRIFTSTREAM__KAFKA__BATCH_SIZE": "lots"}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, document(baseline)), bad)
    assert "kafka.batch_size (set by DRIFTSTREAM__KAFKA__BATCH_SIZE)" in str(caught.value)
    assert SASL_SECRET not in str(caught.value) and REDIS_SECRET not in str(caught.value)
    # librdkafka refusing a setting next to the secrets.
    typo = {**env, "DRIFTSTREAM__KAFKA__CLIENT__SASL_MECHANISMZ": "PLAIN"}
    with pytest.raises(ConfigError) as caught:
        check_client_settings(load_config(write(tmp_path, document(baseline)), typo).kafka)
    assert "kafka.client.sasl.mechanismz" in str(caught.value)
    assert SASL_SECRET not in str(caught.value)


def test_a_replay_sweep_takes_the_environment_too(config_file, monkeypatch):
    monkeypatch.setenv("DRIFTSTREAM__MODELS__FRAUD_DETECTOR__WINDOW__SIZE", "700")
    settings = load_settings(config_file, [parse_set("models.fraud-detector.window.min_count=5,9")])
    windows = [setting.config.models[MODEL].window for setting in settings]
    assert [(w.size, w.min_count) for w in windows] == [(700, 5), (700, 9)]


# ----------------------------------------------------------------------------- bad input


def error_of(capsys, *argv):
    """The one error line of a command that exits 2, with what follows it."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len([line for line in lines if line.startswith("driftstream: error:")]) == 1
    assert lines[0].startswith("driftstream: error:"), captured.err
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize("command", ["validate-config", "run"])
@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"DRIFTSTREAM__REDIS__PASSWORD_FILE": "{tmp}/missing"},
            "redis.password_file (set by DRIFTSTREAM__REDIS__PASSWORD_FILE): cannot read "
            "{tmp}/missing: No such file or directory (mount the secret there",
        ),
        (
            {"DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE": "{tmp}"},
            "kafka.client.sasl.password_file (set by DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_"
            "FILE): cannot read {tmp}: Is a directory",
        ),
        (
            {"DRIFTSTREAM__KAFKA__CLIENT__SASL_MECHANISM": "SCRAM-SHA-1"},
            "kafka.client.sasl.mechanism (set by DRIFTSTREAM__KAFKA__CLIENT__SASL_MECHANISM): "
            "Unsupported SASL mechanism: SCRAM-SHA-1; give exactly one of GSSAPI, PLAIN, "
            "SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
        ),
        (
            {"DRIFTSTREAM__KAFKA__BATCH_SIZE": "lots"},
            "kafka.batch_size (set by DRIFTSTREAM__KAFKA__BATCH_SIZE): Input should be a "
            "valid integer",
        ),
        (
            {"DRIFTSTREAM__MODELS__FRAUD_DETECTOR__SEGMENTS__KEYS": "country,device"},
            "DRIFTSTREAM__MODELS__FRAUD_DETECTOR__SEGMENTS__KEYS: not valid JSON",
        ),
        (
            {"DRIFTSTREAM__REDSI__URL": "redis://r:6379/0"},
            "DRIFTSTREAM__REDSI__URL: 'redsi' is not a config key",
        ),
        (
            {"DRIFTSTREAM__KAFKA__CLIENT__SASL__PASSWORD": SASL_SECRET},
            "DRIFTSTREAM__KAFKA__CLIENT__SASL__PASSWORD: a librdkafka property writes its dots "
            "as single underscores: DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD",
        ),
    ],
)
def test_bad_variables_and_secret_files_get_one_line(
    config_file, tmp_path, monkeypatch, capsys, command, variables, expected
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    argv = [command, str(config_file)] if command == "validate-config" else [command, "--config"]
    if command == "run":
        argv.append(str(config_file))
    err = error_of(capsys, *argv)
    assert expected.format(tmp=tmp_path) in err
    assert SASL_SECRET not in err


def test_a_sasl_mechanism_in_lower_case_is_named_with_the_fix(tmp_path, baseline, capsys):
    data = document(baseline)
    data["kafka"]["client"].update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "plain"})
    err = error_of(capsys, "validate-config", str(write(tmp_path, data)))
    assert (
        "kafka.client.sasl.mechanisms: Unsupported SASL mechanism: plain; give exactly one of "
        "GSSAPI, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (written in capitals: PLAIN)"
    ) in err


def test_a_secret_file_named_in_the_yaml_is_named_when_missing(tmp_path, baseline, capsys):
    path = write(tmp_path, document(baseline, redis={"password_file": "secrets/redis"}))
    err = error_of(capsys, "validate-config", str(path))
    missing = path.parent / "secrets" / "redis"
    assert f"redis.password_file: cannot read {missing}: No such file or directory" in err


def test_validate_config_lists_what_the_environment_set_but_no_secret(tmp_path, baseline):
    sasl = secret_file(tmp_path, "sasl", SASL_SECRET + "\n")
    path = write(tmp_path, document(baseline))
    env = {
        **os.environ,
        "DRIFTSTREAM__REDIS__PASSWORD": REDIS_SECRET,
        "DRIFTSTREAM__KAFKA__CLIENT__SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_MECHANISM": "SCRAM-SHA-256",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_USERNAME": "drift",
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE": str(sasl),
    }
    result = subprocess.run(
        [SCRIPT, "validate-config", str(path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "redis.password: set by DRIFTSTREAM__REDIS__PASSWORD" in result.stdout
    assert (
        "kafka.client.sasl.password_file: set by DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE"
        in result.stdout
    )
    assert f"{path}: ok" in result.stdout
    for secret in (REDIS_SECRET, SASL_SECRET):
        assert secret not in result.stdout and secret not in result.stderr


# ----------------------------------------------------------------------------- a Redis password


class PasswordRedis(EmbeddedRedis):
    """A private redis-server that refuses clients without its password."""

    password = REDIS_SECRET

    @property
    def url(self):
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/0"

    def command(self):
        return [*super().command(), "--requirepass", self.password]


@pytest.fixture(scope="module")
def password_redis():
    with PasswordRedis(find_redis_server()) as server:
        yield server


def run_worker(path, **variables):
    env = {**os.environ, **variables}
    command = [SCRIPT, "run", "--config", str(path)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def only_error_line(result):
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("driftstream: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.integration
def test_a_redis_that_needs_a_password_says_how_to_give_it(tmp_path, baseline, password_redis):
    url = f"redis://{password_redis.host}:{password_redis.port}/0"
    path = write(tmp_path, document(baseline, redis={"url": url}))
    line = only_error_line(run_worker(path))
    assert f"Redis at {url} (redis.url): authentication failed" in line
    assert "requires a password and none is given" in line
    assert "Set redis.password (or DRIFTSTREAM__REDIS__PASSWORD" in line
    assert "DRIFTSTREAM__REDIS__PASSWORD_FILE" in line

    wrong = secret_file(tmp_path, "wrong", "not-the-password\n")
    line = only_error_line(run_worker(path, DRIFTSTREAM__REDIS__PASSWORD_FILE=str(wrong)))
    assert "refused the user or password" in line and "Check redis.password" in line
    assert "not-the-password" not in line

    right = secret_file(tmp_path, "right", REDIS_SECRET + "\n")
    config = load_config(path, {"DRIFTSTREAM__REDIS__PASSWORD_FILE": str(right)})
    client = connect_redis(config)  # has answered a PING with the password
    client.set("driftstream-env-test", "ok")
    assert client.get("driftstream-env-test") == b"ok"
    client.close()
