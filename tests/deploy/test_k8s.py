"""deploy/k8s: the manifests pass Kubernetes' schemas offline, and their parts fit together.

kubernetes-validate ships the JSON schemas of every Kubernetes release it
supports, so the built-in kinds are checked (strictly: no unknown field)
without a cluster or a network. It has no schemas for custom resources: the
PodMonitor and the KEDA ScaledObject are checked here, field by field.
"""

import re

import pytest
import yaml
from deploytools import ROOT, missing
from promql import problems

from driftstream.cli import build_parser
from driftstream.config import check_client_settings, load_config

K8S = ROOT / "deploy" / "k8s"
BUILT_IN = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret"}


def documents():
    """Every manifest by kind (one per file here), the kustomization aside."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] != "Kustomization":
                found[document["kind"]] = document
    return found


@pytest.fixture(scope="module")
def manifests():
    return documents()


@pytest.fixture(scope="module")
def validator():
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate", "pip install kubernetes-validate")
    return kubernetes_validate


@pytest.fixture(scope="module")
def pod(manifests):
    return manifests["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod):
    (found,) = pod["spec"]["containers"]
    return found


@pytest.fixture
def config_file(manifests, tmp_path):
    """The ConfigMap's config, written out as the pod sees it."""
    path = tmp_path / "driftstream.yaml"
    path.write_text(manifests["ConfigMap"]["data"]["driftstream.yaml"])
    return path


def test_built_in_kinds_pass_the_schemas_of_the_oldest_and_newest_release(validator, manifests):
    from kubernetes_validate.utils import all_versions

    versions = all_versions()
    assert set(manifests) >= BUILT_IN
    for version in (versions[0], versions[-1]):
        for kind in BUILT_IN:
            validator.validate(manifests[kind], version, strict=True)


def test_the_validator_refuses_an_unknown_field(validator, manifests):
    broken = yaml.safe_load(yaml.safe_dump(manifests["PodDisruptionBudget"]))
    broken["spec"]["maxUnavailabe"] = 1
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, validator.latest_version(), strict=True)


def test_kustomization_lists_every_manifest_but_the_optional_ones():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / name).exists() for name in listed)
    optional = {"keda-scaledobject.yaml", "secret.example.yaml", "kustomization.yaml"}
    assert listed == {path.name for path in K8S.glob("*.yaml")} - optional


def test_probes_ask_health_and_readiness_on_the_configured_metrics_port(container, config_file):
    config = load_config(config_file, environ={})
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == config.metrics.port
    assert config.metrics.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_pod_runs_a_worker_logging_json_lines(container):
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    assert args.log_format == "json"


def test_the_pod_reads_the_configmap_where_its_arguments_say(pod, container, manifests):
    config_path = container["args"][container["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v and n == "config")
    assert volumes[config_volume]["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert config_path == f"{mounts[config_volume]}/driftstream.yaml"
    # A mount inside a ConfigMap volume fails: the folder cannot be created there.
    paths = list(mounts.values())
    assert not [(a, b) for a in paths for b in paths if a.startswith(b + "/")]
    config_text = manifests["ConfigMap"]["data"]["driftstream.yaml"]
    baselines = re.findall(r"baseline: (\S+)", config_text)
    assert baselines and all(b.startswith(mounts["baselines"] + "/") for b in baselines)


def test_secrets_reach_the_config_through_the_environment(container, config_file, manifests):
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert set(secrets) == {
        "DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD",
        "DRIFTSTREAM__REDIS__PASSWORD",
    }
    example = manifests["Secret"]
    assert {ref["name"] for ref in secrets.values()} == {example["metadata"]["name"]}
    assert {ref["key"] for ref in secrets.values()} == set(example["stringData"])
    alone = load_config(config_file, environ={})
    assert "sasl.password" not in alone.kafka.client, "no secret in the ConfigMap"
    assert alone.redis.password is None
    assert "@" not in alone.redis.url.get_secret_value()

    environ = {name: f"secret-of-{ref['key']}" for name, ref in secrets.items()}
    config = load_config(config_file, environ=environ)
    client = config.kafka.client_settings()
    assert client["sasl.password"] == "secret-of-kafka-sasl-password"
    assert config.redis.password.get_secret_value() == "secret-of-redis-password"
    assert "secret-of" not in repr(config)
    check_client_settings(config.kafka)  # librdkafka takes SASL_SSL with these settings


def test_the_pod_runs_as_the_image_user_without_privileges(pod, container):
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user.groups()
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"]["drop"] == ["ALL"]


def test_service_podmonitor_and_budget_select_the_worker_pods(manifests, pod, container):
    labels = pod["metadata"]["labels"]
    deployment = manifests["Deployment"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {port["name"] for port in container["ports"]}
    service = manifests["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["ports"]} <= port_names
    budget = manifests["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] < deployment["spec"]["replicas"]


def test_the_podmonitor_scrapes_the_metrics_port_as_job_driftstream(manifests, pod, container):
    monitor = manifests["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The rules expect up{job="driftstream"}: the job is the value of this pod label.
    assert labels[spec["jobLabel"]] == "driftstream"
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_scaledobject_scales_the_deployment_on_lag_within_the_partitions(
    manifests, config_file, exported
):
    scaled = manifests["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    config = load_config(config_file, environ={})
    assert spec["minReplicaCount"] <= manifests["Deployment"]["spec"]["replicas"]
    assert spec["maxReplicaCount"] <= config.kafka.partitions, "extra workers would idle"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert "driftstream_consumer_lag_messages" in query
    assert problems(query, exported) == []
    assert float(trigger["metadata"]["threshold"]) > 0
