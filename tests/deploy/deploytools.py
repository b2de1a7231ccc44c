"""Helpers of the deploy checks: where the repository is, and the external tools they run.

External tools (promtool, a compose implementation, hadolint) are found on
PATH or next to this Python (the venv's bin, where pip puts them). Without
one a check skips saying how to install it, except under CI=true, where
.ci/run installs them all and a missing tool is a failure.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def missing(what, install):
    """Skip, or under CI=true fail: ``what`` is not installed, and how to install it."""
    why = f"{what} is not installed: {install} (.ci/run installs it when missing)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def find_tool(name, install):
    """The path of a command-line tool, or a skip (a failure under CI=true) saying how to get it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    return missing(name, install)


def run_tool(args, cwd=ROOT, timeout=120):
    """Run a tool; the result, with its output in the assertion message when it fails."""
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output_of(result):
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
