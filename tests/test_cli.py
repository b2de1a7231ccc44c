"""The command line, run as a user runs it: a subprocess of the installed script."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from driftstream.cli import main
from driftstream.core.baseline import build_profile, load_baseline
from driftstream.synthetic import frame

REPO = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("driftstream", path=str(Path(sys.executable).parent))


def run(*args, cwd):
    return subprocess.run([SCRIPT, *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "make_training_data.py"),
            "--out",
            str(out),
            "--rows",
            "4000",
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_script_is_installed_and_help_explains_itself():
    assert SCRIPT is not None
    result = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, check=True)
    assert "baseline" in result.stdout and "validate-config" in result.stdout
    result = subprocess.run(
        [SCRIPT, "baseline", "--help"], capture_output=True, text=True, check=True
    )
    assert "--prediction" in result.stdout and "default: 20" in result.stdout


@pytest.mark.parametrize("name", ["train.csv", "train.parquet"])
def test_baseline_from_csv_and_parquet(training_data, tmp_path, name):
    out = tmp_path / "baselines" / "fraud-detector.json"
    result = run(
        "baseline",
        "--data",
        str(training_data / name),
        "--model-id",
        "fraud-detector",
        "--prediction",
        "prediction",
        "--score",
        "score",
        "--target",
        "label",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    profile = load_baseline(out.read_bytes())
    assert set(profile.features) == {
        "amount",
        "latency_ms",
        "customer_age",
        "items",
        "country",
        "device",
        "is_new_customer",
    }
    age = profile.features["customer_age"]
    assert 0.01 < age.null_rate < 0.06  # the generator blanks about 3%
    assert profile.features["country"].null_count > 0
    assert profile.score is not None and profile.prediction is not None
    assert "customer_age" in result.stdout and "wrote" in result.stdout
    # With a target and a prediction, the model's own performance is recorded.
    assert profile.performance is not None and profile.performance.task == "classification"
    assert profile.performance.positive is None  # fraud/ok: no "1" or "true" to guess from
    assert "performance (classification): accuracy 0.9" in result.stdout


def test_baseline_records_the_positive_class_and_the_task(training_data, tmp_path):
    out = tmp_path / "b.json"
    common = [
        "baseline",
        "--data",
        str(training_data / "train.parquet"),
        "--model-id",
        "m",
        "--prediction",
        "prediction",
        "--score",
        "score",
        "--target",
        "label",
    ]
    result = run(*common, "--positive", "fraud", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    performance = load_baseline(out.read_bytes()).performance
    assert performance is not None and performance.positive == "fraud"
    reference = performance.reference
    assert 0 < reference.values["recall"] < 1 and reference.spread["roc_auc"] > 0
    assert "positive class 'fraud'" in result.stdout
    result = run(*common, "--task", "regression", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_csv_and_parquet_give_the_same_profile(training_data, tmp_path):
    profiles = []
    for name in ("train.csv", "train.parquet"):
        out = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "baseline",
                    "--data",
                    str(training_data / name),
                    "--model-id",
                    "m",
                    "--score",
                    "score",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        profiles.append(json.loads(out.read_bytes()) | {"created_from": "", "created_at": None})
    assert profiles[0] == profiles[1]


def test_baseline_records_when_it_was_built(training_data, tmp_path):
    out = tmp_path / "b.json"
    before = time.time()
    args = ["baseline", "--data", str(training_data / "train.csv"), "--model-id", "m"]
    assert main([*args, "--out", str(out)]) == 0
    created = load_baseline(out.read_bytes()).created_at
    assert created is not None and before <= created <= time.time()


def test_kind_override_and_bad_inputs(training_data, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "baseline",
                "--data",
                str(training_data / "train.csv"),
                "--model-id",
                "m",
                "--kind",
                "items=categorical",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_baseline(out.read_bytes()).features["items"].to_dict()["kind"] == "categorical"
    assert (
        main(
            [
                "baseline",
                "--data",
                str(training_data / "train.csv"),
                "--model-id",
                "m",
                "--kind",
                "items=text",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--kind 'items=text'" in capsys.readouterr().err
    assert (
        main(
            ["baseline", "--data", str(tmp_path / "nope.csv"), "--model-id", "m", "--out", str(out)]
        )
        == 2
    )
    assert "nope.csv" in capsys.readouterr().err
    assert (
        main(
            [
                "baseline",
                "--data",
                str(training_data / "train.csv"),
                "--model-id",
                "m",
                "--target",
                "labl",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "labl" in capsys.readouterr().err


def test_validate_config_accepts_the_example_and_names_bad_keys(training_data, tmp_path):
    baseline = tmp_path / "baselines" / "fraud-detector.json"
    assert (
        main(
            [
                "baseline",
                "--data",
                str(training_data / "train.parquet"),
                "--model-id",
                "fraud-detector",
                "--prediction",
                "prediction",
                "--score",
                "score",
                "--target",
                "label",
                "--positive",
                "fraud",
                "--out",
                str(baseline),
            ]
        )
        == 0
    )
    config = tmp_path / "config" / "driftstream.yaml"
    config.parent.mkdir()
    shutil.copy(REPO / "config" / "driftstream.yaml", config)
    result = run("validate-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fraud-detector: 9 columns watched" in result.stdout
    # The example turns log_loss off: 7 of the 8 classification metrics.
    assert "fraud-detector: labels joined (classification; 7 metrics judged)" in result.stdout

    data = yaml.safe_load(config.read_text())
    data["models"]["fraud-detector"]["window"]["size"] = -5
    config.write_text(yaml.safe_dump(data))
    result = run("validate-config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "models.fraud-detector.window.size" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            {"bootstrap.server": "k:9092"},
            'kafka.client.bootstrap.server: No such configuration property: "bootstrap.server"',
        ),
        (
            {"bootstrap.servers": "k:9092", "security.protocol": "bogus"},
            "kafka.client.security.protocol: ",
        ),
        (
            {
                "bootstrap.servers": "k:9092",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "FOO",
            },
            "kafka.client.sasl.mechanism: Unsupported SASL mechanism: FOO",
        ),
    ],
)
def test_validate_config_names_bad_kafka_client_settings(tmp_path, client, expected):
    baseline = tmp_path / "fraud-detector.json"
    profile = build_profile(frame(2000, seed=1), model_id="fraud-detector", score="score")
    baseline.write_bytes(profile.to_json())
    config = tmp_path / "driftstream.yaml"
    models = {"fraud-detector": {"baseline": baseline.name}}
    document = {"models": models, "kafka": {"client": client}}
    config.write_text(yaml.safe_dump(document))
    result = run("validate-config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("driftstream: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
