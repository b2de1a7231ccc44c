"""Seeded streams for the detector golden tests.

Each case is a stream, detector parameters and the fewest detections river
finds on it, so a case cannot silently degrade into a stream with nothing to
detect. Tests take a case by naming an ``adwin_case`` or ``ph_case`` argument
(``adwin_drift_case``/``ph_drift_case``: only cases with a detection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

Values = np.ndarray


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Values]
    params: dict[str, Any] = field(default_factory=dict)
    min_detections: int = 0
    # Page-Hinkley only: how far our mean and faded sums may sit from river's
    # (absolute, or relative for values above 1).
    tolerance: float = 1e-10

    def values(self) -> Values:
        if self.build not in _STREAMS:
            _STREAMS[self.build] = self.build()
        return _STREAMS[self.build]


_STREAMS: dict[Callable[[], Values], Values] = {}


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def abrupt(seed: int, segments: int = 12, length: int = 1500, jump: float = 1.5) -> Values:
    """Piecewise-constant mean with unit noise; each segment's mean is random."""
    r = rng(seed)
    means = np.cumsum(r.choice([-jump, jump], size=segments))
    return np.repeat(means, length) + r.normal(0.0, 1.0, segments * length)


def gradual(seed: int, n: int = 20000, slope: float = 4e-4) -> Values:
    """A mean that keeps moving, up then down."""
    r = rng(seed)
    t = np.arange(n)
    mean = slope * np.minimum(t, n - t)
    return mean + r.normal(0.0, 1.0, n)


def sigmoid(seed: int, n: int = 12000, width: float = 300.0) -> Values:
    """Smooth transitions between two concepts, several times."""
    r = rng(seed)
    t = np.arange(n)
    phase = np.sin(2 * np.pi * t / 4000.0) * 4000.0 / width
    return 2.0 / (1.0 + np.exp(-phase)) + r.normal(0.0, 0.7, n)


def variance_change(seed: int, n: int = 16000) -> Values:
    """Zero mean throughout; the spread alternates between 0.5 and 4."""
    r = rng(seed)
    scale = np.repeat(np.tile([0.5, 4.0], 4), n // 8)
    return r.normal(0.0, 1.0, n) * scale


def noise(seed: int, n: int = 20000) -> Values:
    return rng(seed).normal(0.0, 1.0, n)


def binary(seed: int, n: int = 20000, period: int = 2500) -> Values:
    r = rng(seed)
    p = np.repeat(np.tile([0.1, 0.6, 0.3, 0.9], n // (4 * period) + 1), period)[:n]
    return (r.random(n) < p).astype(np.float64)


def alternating_binary(seed: int, n: int = 30000, period: int = 100) -> Values:
    """Flips between p=0.1 and p=0.9 every ``period`` points: many detections."""
    r = rng(seed)
    p = np.repeat(np.tile([0.1, 0.9], n // (2 * period) + 1), period)[:n]
    return (r.random(n) < p).astype(np.float64)


def counts(seed: int, n: int = 20000) -> Values:
    """Poisson counts whose rate steps between 2 and 6."""
    r = rng(seed)
    rate = np.repeat(np.tile([2.0, 6.0, 3.0, 5.0], 5), n // 20)
    return r.poisson(rate).astype(np.float64)


def offset(seed: int, base: float, scale: float = 1.0) -> Values:
    return base + scale * abrupt(seed, segments=8, length=1500, jump=2.0)


def constant_steps() -> Values:
    """Exactly constant stretches: zero variance inside each."""
    return np.repeat([0.0, 1.0, 1.0, 0.0, 5.0, 5.0, 2.0], 700)


def tiny(seed: int) -> Values:
    return 1e-8 * abrupt(seed, segments=8, length=1000)


ADWIN_CASES = [
    Case("abrupt-0", lambda: abrupt(0), min_detections=5),
    Case("abrupt-1", lambda: abrupt(1), min_detections=5),
    Case("abrupt-2", lambda: abrupt(2, jump=0.7), min_detections=5),
    Case("gradual", lambda: gradual(3), min_detections=8),
    Case("sigmoid", lambda: sigmoid(4), min_detections=6),
    Case("variance", lambda: variance_change(5), min_detections=0),
    Case("noise", lambda: noise(6), min_detections=0),
    Case("binary", lambda: binary(7), min_detections=4),
    Case("alternating-binary", lambda: alternating_binary(8), min_detections=200),
    Case("counts", lambda: counts(9), min_detections=10),
    Case("offset-1e6", lambda: offset(10, 1e6), min_detections=5),
    Case("offset-minus-1e4", lambda: offset(11, -1e4, 3.0), min_detections=5),
    Case("constant-steps", constant_steps, min_detections=4),
    # The bound has a term that ignores the data scale, so tiny values never trigger.
    Case("tiny", lambda: tiny(12), min_detections=0),
    Case("clock-1-delta-0.01", lambda: abrupt(13, length=800), {"clock": 1, "delta": 0.01}, 5),
    Case("clock-1-noise", lambda: noise(14, 6000), {"clock": 1}, 0),
    Case("clock-7", lambda: counts(15), {"clock": 7}, 5),
    Case("clock-64-delta-0.1", lambda: abrupt(16), {"clock": 64, "delta": 0.1}, 5),
    Case("max-buckets-2", lambda: abrupt(17), {"max_buckets": 2}, 5),
    Case(
        "max-buckets-3-mwl-1-grace-0",
        lambda: binary(18),
        {"max_buckets": 3, "min_window_length": 1, "grace_period": 0},
        5,
    ),
    Case("mwl-20-grace-100", lambda: abrupt(19), {"min_window_length": 20, "grace_period": 100}, 5),
    Case("many-clock-4", lambda: alternating_binary(20), {"clock": 4, "delta": 0.05}, 250),
    Case("delta-0.3-noise", lambda: noise(21, 30000), {"delta": 0.3}, 3),
]

PH_CASES = [
    Case("abrupt-0", lambda: abrupt(0), min_detections=5),
    Case("abrupt-1", lambda: abrupt(1), min_detections=5),
    Case("abrupt-2", lambda: abrupt(2, jump=0.7), min_detections=3),
    Case("gradual", lambda: gradual(3), min_detections=3),
    Case("sigmoid", lambda: sigmoid(4), min_detections=3),
    Case("variance", lambda: variance_change(5), min_detections=0),
    Case("noise", lambda: noise(6), min_detections=0),
    Case("binary", lambda: binary(7), {"threshold": 10.0}, 5),
    Case("alternating-binary", lambda: alternating_binary(8), {"threshold": 5.0}, 100),
    Case("counts", lambda: counts(9), min_detections=5),
    Case("offset-1e6", lambda: offset(10, 1e6), min_detections=5, tolerance=1e-5),
    Case("offset-minus-1e4", lambda: offset(11, -1e4, 3.0), min_detections=5, tolerance=1e-8),
    Case("constant-steps", constant_steps, min_detections=3),
    Case("tiny", lambda: tiny(12), {"threshold": 1e-7, "delta": 1e-10}, 3),
    Case("mode-up", lambda: abrupt(13), {"mode": "up", "threshold": 20.0}, 3),
    Case("mode-down", lambda: abrupt(14), {"mode": "down", "threshold": 20.0}, 3),
    Case("mode-up-noise", lambda: noise(15), {"mode": "up", "threshold": 5.0}, 5),
    Case("small-threshold", lambda: noise(16), {"threshold": 3.0, "min_instances": 10}, 500),
    Case("min-instances-0", lambda: counts(17), {"min_instances": 0, "threshold": 8.0}, 10),
    Case("min-instances-500", lambda: abrupt(18), {"min_instances": 500}, 3),
    Case("alpha-0.99", lambda: abrupt(19), {"alpha": 0.99, "threshold": 5.0}, 10),
    Case("alpha-1", lambda: abrupt(20), {"alpha": 1.0}, 3),
    Case("alpha-0.5", lambda: binary(21), {"alpha": 0.5, "threshold": 1.5, "delta": 0.0}, 10),
    Case("delta-0.1", lambda: gradual(22), {"delta": 0.1, "threshold": 20.0}, 3),
    Case("long-noise", lambda: noise(23, 60000), {"delta": 0.05}, 5),
]


def _parametrize(metafunc: pytest.Metafunc, argname: str, cases: list[Case]) -> None:
    if argname in metafunc.fixturenames:
        metafunc.parametrize(argname, cases, ids=[c.name for c in cases])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _parametrize(metafunc, "adwin_case", ADWIN_CASES)
    _parametrize(metafunc, "ph_case", PH_CASES)
    # Cases guaranteed to contain a detection, for tests that stop right at one.
    _parametrize(metafunc, "adwin_drift_case", [c for c in ADWIN_CASES if c.min_detections])
    _parametrize(metafunc, "ph_drift_case", [c for c in PH_CASES if c.min_detections])
