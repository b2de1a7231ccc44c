"""Judges a model's joined prediction/label pairs: windowed metrics and the error stream.

Each judged window (``runtime/labels.py`` hands them over in order, their
pairs sorted by prediction time) yields:

- **metrics** (``core/performance.py``) compared with the baseline's: a
  metric worse than the baseline by more than its allowed margin (sampling
  error plus tolerance) opens a performance episode, and ``resolve_windows``
  windows in a row within the margin close it;
- **the error stream**: one value per pair (0/1 misclassification, or the
  absolute error over the baseline's MAE for regression) feeds ADWIN and,
  for classifiers, DDM. A detection while the window's error rate is above
  the baseline's (by two standard errors) opens a detector episode. The pairs arrive in a fixed
  order, so detections repeat exactly on a restart or a replay.

>>> settings = PerformanceSettings("m", "regression", None, min_count=3)
>>> monitor = PerformanceMonitor(settings, None)
>>> pairs = WindowPairs(0, 0.0, 60.0, np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0]),
...                     None, np.array([1.0, 2.0, 3.0]))
>>> monitor.judge(pairs)  # no baseline performance: metrics only, nothing to judge against
[]
>>> round(monitor.last_values["mae"], 3)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core import performance
from driftstream.core.detectors import ADWIN
from driftstream.core.detectors.ddm import DDM
from driftstream.core.episodes import DetectorEpisodes
from driftstream.core.findings import BASELINE, COMPARISON, RESOLVED, Finding, Reading
from driftstream.core.settings import DEFAULT_ADWIN, EpisodeSettings
from driftstream.core.state import STATE_VERSION, StatePath, StateReader

PERFORMANCE = "performance"
# DDM remembers the lowest p + s once warm; after river's 30 points a model
# with a low error rate often has made no error yet (p = s = 0), and the next
# error then reads as a drift. 1,000 points make that minimum meaningful.
DDM_WARM_START = 1000
# Detections page only while the window's error rate is this many standard
# errors above the baseline's: a detector also fires on a lucky calm stretch
# followed by ordinary errors.
RISING_Z = 2.0
FEATURE = "__performance__"
ERROR_RATE = "error_rate"
WINDOW = "window"


@dataclass(frozen=True)
class MetricSetting:
    """One metric to judge; ``None`` keeps ``core/performance.py``'s default."""

    name: str
    z: float | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class PerformanceSettings:
    model_id: str
    task: str  # performance.CLASSIFICATION or performance.REGRESSION
    positive: str | None  # the positive class as the pairs name it, for binary metrics
    min_count: int = 200
    metrics: tuple[MetricSetting, ...] | None = None  # None: every metric of the task
    detectors: tuple[str, ...] = ("adwin", "ddm")
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)
    adwin: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ADWIN))
    # Champion vs challenger on the window's pairs, versions apart (None: most pairs).
    compare_versions: bool = False
    champion: str | None = None

    @property
    def regression(self) -> bool:
        return self.task == performance.REGRESSION

    def judged_metrics(self) -> tuple[MetricSetting, ...]:
        if self.metrics is not None:
            return self.metrics
        names = (
            performance.REGRESSION_METRICS
            if self.regression
            else (performance.CLASSIFICATION_METRICS)
        )
        return tuple(MetricSetting(name) for name in names)


@dataclass(frozen=True)
class WindowPairs:
    """One window's joined pairs, in prediction-time order."""

    number: int
    start: float
    end: float
    labels: np.ndarray  # floats (regression) or class names
    predictions: np.ndarray
    scores: npt.NDArray[np.float64] | None  # NaN where absent
    ts: npt.NDArray[np.float64]  # each pair's prediction time
    versions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)


class PerformanceMonitor:
    """Windowed metrics and error-stream detectors of one model; state in and out."""

    def __init__(
        self, settings: PerformanceSettings, reference: performance.Reference | None
    ) -> None:
        self.settings = settings
        self.reference = reference  # None: nothing to judge against
        self.calm: dict[str, int] = {}  # open metric episodes -> good windows in a row
        self.detector_episodes = DetectorEpisodes(settings.episodes)
        adwin = "adwin" in settings.detectors
        self.adwin = ADWIN(**settings.adwin) if adwin else None  # type: ignore[arg-type]
        ddm = "ddm" in settings.detectors and not settings.regression
        self.ddm = DDM(warm_start=DDM_WARM_START) if ddm else None
        self.seen = 0  # pairs fed to the detectors so far
        self.last_values: dict[str, float] = {}
        self.readings: list[Reading] = []  # of the last window judged, one per metric

    # -- one window -------------------------------------------------------------

    def judge(self, pairs: WindowPairs) -> list[Finding]:
        metrics = self._metrics(pairs)
        self.last_values = {k: v for k, v in metrics.items() if k in self._names()}
        findings = []
        thresholds: dict[str, float] = {}
        if self.reference is not None and len(pairs) >= self.settings.min_count:
            findings += self._judge_metrics(pairs, metrics, thresholds)
        if self.reference is not None and self.settings.compare_versions:
            findings += self._compare_versions(pairs)
        self.readings = [
            Reading(
                FEATURE,
                m.name,
                BASELINE,
                metrics.get(m.name, math.nan),
                thresholds.get(m.name),
                pairs.start,
                pairs.end,
                len(pairs),
                baseline_value(self.reference, m.name),
            )
            for m in self.settings.judged_metrics()
        ]
        findings += self._judge_errors(pairs)
        return findings

    def _names(self) -> set[str]:
        return {m.name for m in self.settings.judged_metrics()}

    def _metrics(self, pairs: WindowPairs) -> dict[str, float]:
        if self.settings.regression:
            return performance.regression(pairs.labels, pairs.predictions)
        return performance.classification(
            pairs.labels, pairs.predictions, pairs.scores, self.settings.positive
        )

    def _judge_metrics(
        self, pairs: WindowPairs, metrics: Mapping[str, float], thresholds: dict[str, float]
    ) -> list[Finding]:
        """Findings of the window's metrics; fills ``thresholds`` with each one's bound."""
        assert self.reference is not None
        findings = []
        for metric in self.settings.judged_metrics():
            value = metrics.get(metric.name, math.nan)
            options = {
                k: v for k, v in (("z", metric.z), ("tolerance", metric.tolerance)) if v is not None
            }
            worse, threshold = performance.judge(
                metric.name, self.reference, value, len(pairs), **options
            )
            thresholds[metric.name] = threshold
            kind = self._episode(metric.name, worse, math.isnan(value))
            if kind is not None:
                base = baseline_value(self.reference, metric.name)
                severity = "info" if kind == RESOLVED else _severity(value, threshold, base)
                findings.append(
                    self._finding(
                        kind,
                        WINDOW,
                        metric.name,
                        value,
                        threshold,
                        severity,
                        pairs,
                        len(pairs) - 1,
                    )
                )
        return findings

    def _compare_versions(self, pairs: WindowPairs) -> list[Finding]:
        """Each challenger's metrics against the champion's, over the same window's pairs.

        Versions with fewer than ``min_count`` pairs are not judged. Open
        comparisons of versions absent from the window are forgotten, so the
        state holds only versions still in the traffic.
        """
        assert self.reference is not None
        names = np.asarray(pairs.versions if pairs.versions is not None else [], dtype=object)
        sizes: dict[str, int] = {}
        if len(names):
            found, counts = np.unique(names, return_counts=True)
            sizes = dict(zip(map(str, found.tolist()), counts.tolist(), strict=True))
        self.calm = {
            k: v for k, v in self.calm.items() if not _compared(k) or _compared(k) in sizes
        }
        champion = self.settings.champion
        if champion is None and sizes:
            champion = min(sizes, key=lambda v: (-sizes[v], v))
        least = self.settings.min_count
        if champion is None or sizes.get(champion, 0) < least:
            return []
        mine = self._metrics(_subset(pairs, names == champion))
        findings = []
        for challenger in sorted(v for v, n in sizes.items() if v != champion and n >= least):
            rows = np.flatnonzero(names == challenger)
            theirs = self._metrics(_subset(pairs, names == challenger))
            for metric in self.settings.judged_metrics():
                options = {
                    k: v
                    for k, v in (("z", metric.z), ("tolerance", metric.tolerance))
                    if v is not None
                }
                value = theirs.get(metric.name, math.nan)
                worse, threshold = performance.compare(
                    metric.name,
                    self.reference,
                    (mine.get(metric.name, math.nan), sizes[champion]),
                    (value, sizes[challenger]),
                    **options,
                )
                key = f"{COMPARED}{challenger}|{metric.name}"
                kind = self._episode(key, worse, math.isnan(value))
                if kind is None:
                    continue
                opened = kind == PERFORMANCE
                finding = self._finding(
                    COMPARISON if opened else RESOLVED,
                    COMPARISON,
                    metric.name,
                    value,
                    threshold,
                    "warning" if opened else "info",
                    pairs,
                    int(rows[-1]),
                )
                details = {
                    "champion": champion,
                    "challenger": challenger,
                    "champion_value": _plain(mine.get(metric.name, math.nan)),
                    "champion_count": sizes[champion],
                    "challenger_count": sizes[challenger],
                }
                findings.append(replace(finding, reference="champion", details=details))
        return findings

    def _episode(self, key: str, worse: bool, unknown: bool) -> str | None:
        if key not in self.calm:
            if worse:
                self.calm[key] = 0
                return PERFORMANCE
            return None
        if unknown:
            return None
        if worse:
            self.calm[key] = 0
            return None
        self.calm[key] += 1
        if self.calm[key] >= self.settings.episodes.resolve_windows:
            del self.calm[key]
            return RESOLVED
        return None

    def _judge_errors(self, pairs: WindowPairs) -> list[Finding]:
        errors = self._errors(pairs)
        if not len(errors):
            return []
        rising = self._rising(errors)
        value, expected = float(np.mean(errors)), self._reference_error()
        findings = []
        for name, detector in (("adwin", self.adwin), ("ddm", self.ddm)):
            if detector is None:
                continue
            hits = (detector.update_many(errors) + self.seen).tolist()
            hits = hits if rising else []
            changes = self.detector_episodes.advance(name, hits, self.seen + len(errors))
            for kind, position in changes:
                row = min(max(position - self.seen, 0), len(errors) - 1)
                findings.append(
                    self._finding(
                        PERFORMANCE if kind != RESOLVED else RESOLVED,
                        name,
                        ERROR_RATE,
                        value,
                        expected,
                        "info" if kind == RESOLVED else "warning",
                        pairs,
                        row,
                    )
                )
        self.seen += len(errors)
        return findings

    def _errors(self, pairs: WindowPairs) -> npt.NDArray[np.float64]:
        if self.settings.regression:
            scale = baseline_value(self.reference, "mae") if self.reference is not None else 1.0
            scale = scale if math.isfinite(scale) and scale > 0 else 1.0
            error = np.abs(pairs.labels.astype(np.float64) - pairs.predictions.astype(np.float64))
            return np.asarray(error / scale, dtype=np.float64)
        return (pairs.labels != pairs.predictions).astype(np.float64)

    def baseline_of(self, statistic: str) -> float:
        """The baseline's value of a finding's statistic (NaN when it has none).

        For ``error_rate``: a classifier's baseline error rate; regression
        errors are scaled by the baseline's MAE and have no rate to show.
        """
        if statistic == ERROR_RATE:
            return math.nan if self.settings.regression else self._reference_error()
        return baseline_value(self.reference, statistic)

    def _reference_error(self) -> float:
        if self.settings.regression:
            return 1.0  # errors are scaled by the baseline's MAE
        if self.reference is None:
            return math.nan
        return 1.0 - baseline_value(self.reference, "accuracy")

    def _rising(self, errors: npt.NDArray[np.float64]) -> bool:
        """Only a clearly worse error rate pages; with no baseline, any change does."""
        expected = self._reference_error()
        if not math.isfinite(expected):
            return True
        rate, count = float(np.mean(errors)), len(errors)
        if self.settings.regression:
            spread = float(np.std(errors)) if count > 1 else 0.0
        else:
            spread = math.sqrt(expected * (1.0 - expected))
        return rate > expected + RISING_Z * spread / math.sqrt(count)

    def _finding(
        self,
        kind: str,
        detector: str,
        statistic: str,
        value: float,
        threshold: float,
        severity: str,
        pairs: WindowPairs,
        row: int,
    ) -> Finding:
        version = "" if pairs.versions is None else str(pairs.versions[row])
        return Finding(
            kind,
            self.settings.model_id,
            version,
            FEATURE,
            detector,
            statistic,
            value,
            threshold,
            severity,
            BASELINE,
            pairs.start,
            pairs.end,
            len(pairs),
            float(pairs.ts[row]),
            row,
        )

    # -- state ------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "performance",
            "version": STATE_VERSION,
            "open": dict(sorted(self.calm.items())),
            "detector_episodes": self.detector_episodes.to_state(),
            "adwin": None if self.adwin is None else self.adwin.to_state(),
            "ddm": None if self.ddm is None else self.ddm.to_state(),
            "seen": self.seen,
        }

    @classmethod
    def from_state(
        cls,
        settings: PerformanceSettings,
        reference: performance.Reference | None,
        state: Mapping[str, Any],
        at: StatePath | None = None,
    ) -> PerformanceMonitor:
        keys = ("open", "detector_episodes", "adwin", "ddm", "seen")
        reader = StateReader(state, "performance", keys, at or StatePath("performance"))
        monitor = cls(settings, reference)
        monitor.calm = reader.count_map("open")
        monitor.detector_episodes = DetectorEpisodes.from_state(
            settings.episodes,
            reader.mapping("detector_episodes"),
            reader.child("detector_episodes"),
        )
        if monitor.adwin is not None and reader.raw("adwin") is not None:
            monitor.adwin = ADWIN.from_state(reader.mapping("adwin"), reader.child("adwin"))
        if monitor.ddm is not None and reader.raw("ddm") is not None:
            monitor.ddm = DDM.from_state(reader.mapping("ddm"), reader.child("ddm"))
        monitor.seen = reader.count("seen")
        return monitor


COMPARED = "compare|"  # prefix of open comparison episodes: compare|<version>|<metric>


def _compared(key: str) -> str | None:
    """The challenger of an open comparison episode's key; None for other episodes."""
    if not key.startswith(COMPARED):
        return None
    return key[len(COMPARED) :].rsplit("|", 1)[0]


def _subset(pairs: WindowPairs, mask: npt.NDArray[np.bool_]) -> WindowPairs:
    scores = None if pairs.scores is None else pairs.scores[mask]
    return replace(
        pairs,
        labels=pairs.labels[mask],
        predictions=pairs.predictions[mask],
        scores=scores,
        ts=pairs.ts[mask],
        versions=None if pairs.versions is None else pairs.versions[mask],
    )


def _plain(value: float) -> float | None:
    return value if math.isfinite(value) else None


def baseline_value(reference: performance.Reference | None, metric: str) -> float:
    """The baseline's value of ``metric`` (NaN when it has none)."""
    if reference is None:
        return math.nan
    return float(performance.reference_value(reference, metric))


def _severity(value: float, threshold: float, base: float) -> str:
    """Critical past twice the allowed margin, else warning."""
    if not all(math.isfinite(v) for v in (value, threshold, base)):
        return "warning"
    margin = abs(threshold - base)
    return "critical" if abs(value - base) > 2 * margin else "warning"
