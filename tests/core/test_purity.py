"""The core stays pure: numpy and the standard library, nothing with I/O."""

import ast
import subprocess
import sys
from pathlib import Path

import driftstream.core

CORE = Path(driftstream.core.__file__).parent
FORBIDDEN = (
    "confluent_kafka",
    "kafka",
    "redis",
    "prometheus_client",
    "river",
    "pydantic",
    "yaml",
    "pyarrow",
    "orjson",
    "logging",
)


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_sources_import_only_numpy_stdlib_and_core():
    allowed = set(sys.stdlib_module_names) | {"numpy", "driftstream"}
    for path in sorted(CORE.rglob("*.py")):
        roots = imported_roots(path)
        assert roots <= allowed, f"{path.relative_to(CORE)} imports {sorted(roots - allowed)}"
        assert not roots & set(FORBIDDEN), f"{path.relative_to(CORE)} imports I/O modules"
        text = path.read_text()
        assert "from driftstream." not in text.replace("from driftstream.core", ""), path


def test_importing_every_core_module_loads_no_io_library():
    modules = sorted(
        "driftstream.core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert len(modules) >= 8
