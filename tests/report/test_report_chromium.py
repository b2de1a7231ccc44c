"""The backtest report in a real browser: headless Chromium draws it, offline, without errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_report import EXPECTED_CHARTS, sample_report

from driftstream.report import render_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's headless Chromium on PATH (apt-get install chromium; CI installs it)",
)

WHITE = (255, 255, 255)
PAGE_BACKGROUND = (246, 247, 249)
VALUE_BLUE = (0x1F, 0x5F, 0xBF)
ALERT_RED = (0xD9, 0x2D, 0x20)
INCIDENT_BAND = (255, 238, 206)  # the band's orange at 22 % over white


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a private profile; it exits once the page has loaded."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def console_lines(stderr: str) -> list[str]:
    """Lines where the page wrote to the console or threw (Chromium logs both as CONSOLE)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_report(sample_report()), encoding="utf-8")
    return path


def near(colours: list[tuple[int, tuple[int, int, int]]], target: tuple[int, ...], by: int) -> int:
    """How many pixels are within ``by`` (summed over channels) of ``target``."""
    return sum(
        count
        for count, colour in colours
        if sum(abs(a - b) for a, b in zip(colour, target, strict=True)) <= by
    )


def test_the_report_renders_charts(tmp_path, report_file):
    screenshot = tmp_path / "report.png"
    done = chromium(
        tmp_path,
        "--window-size=1280,2400",
        f"--screenshot={screenshot}",
        report_file.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    assert colours is not None
    total = 1280 * 2400
    drawn = sum(count for count, colour in colours if colour not in (WHITE, PAGE_BACKGROUND))
    assert len(colours) > 200  # text, lines and shading, anti-aliased: not a blank page
    assert drawn / total > 0.05
    assert near(colours, VALUE_BLUE, 30) > 500  # the value lines
    assert near(colours, ALERT_RED, 30) > 50  # the alert markers
    assert near(colours, INCIDENT_BAND, 12) > 10_000  # the incident bands


def test_the_report_loads_without_console_errors(tmp_path, report_file):
    done = chromium(
        tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", report_file.as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_lines(done.stderr) == []
    assert done.stdout.count("<svg") == EXPECTED_CHARTS  # the browser built every chart


def test_console_errors_would_be_seen(tmp_path):
    """The check above can fail: a page that throws shows up in Chromium's log."""
    page = tmp_path / "throws.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>missing_function();</script>", "utf-8")
    done = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    assert any("Uncaught" in line for line in console_lines(done.stderr))
