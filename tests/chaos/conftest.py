"""The chaos suite reuses the runtime tests' helpers (configs, traffic, snapshots)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))


@pytest.fixture
def full(request):
    """Whether the long form runs (``--chaos-full``)."""
    return request.config.getoption("--chaos-full")
