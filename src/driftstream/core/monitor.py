"""One model's monitors: windowed statistics and sequential detectors.

``ModelMonitor.update(batch)`` takes a columnar micro-batch and returns
findings: drift episodes opening and resolving. The monitor owns no I/O; its
whole state goes out through ``to_state()`` and back in through
``from_state()``, so a restored monitor continues exactly as if it had never
stopped.

Two kinds of evidence, complementary on purpose:

- **Windows.** Each tumbling window's sketch of a feature is compared with
  the baseline (and, optionally, with the previous window) using the
  configured statistics. Slow to react, but sees any change of shape.
- **Detectors.** ADWIN, Page-Hinkley and the multi-chart CUSUM see every
  value, standardised by the baseline so one set of defaults fits a feature
  in dollars and one in milliseconds. Standardising by mean and standard
  deviation is not enough: on a heavy-tailed feature (a lognormal amount)
  the detectors then raise
  false alarms, because rare huge values dominate. So each value goes
  through the baseline's distribution function instead, centred and scaled
  to unit variance: bounded, and the same shape for every feature under no
  drift. Fast, but only for shifts in location.

>>> import numpy as np
>>> from driftstream.core.baseline import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"x": rng.normal(size=5000)}, model_id="m")
>>> monitor = ModelMonitor(settings_from_baseline(profile), profile)
>>> stable = Batch(np.arange(4000.0), {"x": rng.normal(size=4000)})
>>> monitor.update(stable)
[]
>>> shifted = Batch(np.arange(4000.0, 8000.0), {"x": rng.normal(loc=1.0, size=4000)})
>>> sorted({(f.kind, f.detector) for f in monitor.update(shifted)})
[('drift', 'adwin'), ('drift', 'cusum'), ('drift', 'page_hinkley'), ('drift', 'window')]
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core import stats
from driftstream.core.baseline import BaselineProfile, CategoricalProfile, NumericProfile
from driftstream.core.batch import Batch
from driftstream.core.budget import critical_value
from driftstream.core.detectors import (
    ADWIN,
    CUSUM,
    PageHinkley,
    update_adwins,
    update_cusums,
    update_page_hinkleys,
)
from driftstream.core.detectors._state import canonical_base64
from driftstream.core.detectors.cusum import threshold_for_rate
from driftstream.core.detectors.page_hinkley import RUNNING_FLOATS
from driftstream.core.episodes import DetectorEpisodes, WindowEpisodes
from driftstream.core.findings import BASELINE, DRIFT, PREVIOUS_WINDOW, RESOLVED, Finding, Reading
from driftstream.core.quality import (
    CHECKS_PER_COLUMN,
    QUALITY,
    count_outside,
    judge_quality,
    quality_finding,
)
from driftstream.core.settings import (
    ADWIN as ADWIN_NAME,
)
from driftstream.core.settings import (
    CATEGORICAL,
    DEFAULT_CATEGORICAL_STATISTICS,
    DEFAULT_NUMERIC_STATISTICS,
    DETECTORS,
    NUMERIC,
    PAGE_HINKLEY,
    PREDICTION,
    SCORE,
    FeatureSettings,
    MonitorSettings,
    StatisticSetting,
)
from driftstream.core.settings import (
    CUSUM as CUSUM_NAME,
)
from driftstream.core.sketches import CategorySketch, NumericSketch
from driftstream.core.state import STATE_VERSION, StatePath, StateReader
from driftstream.core.windows import Bounds, Clock, clock_from_state, new_clock

_MONITOR_KEYS = (
    "model_id",
    "model_version",
    "events",
    "clock",
    "window_episodes",
    "detector_episodes",
    "features",
)
_WATCH_KEYS = ("sketch", "previous", "detectors", "recent", "outside")
_DETECTOR_CLASSES: dict[str, type[ADWIN] | type[PageHinkley] | type[CUSUM]] = {
    ADWIN_NAME: ADWIN,
    PAGE_HINKLEY: PageHinkley,
    CUSUM_NAME: CUSUM,
}
RECENT = 64  # values behind a detector finding's reported level
# Those values are kept in steps of 1/4096 (they lie within ±sqrt(3)), so the
# state holds small integers and the level never depends on batch cuts.
RECENT_STEPS = 4096.0
RECENT_LIMIT = 7200
_RECENT_DTYPE = np.dtype("<i2")
_FLOAT64 = np.dtype("<f8")
SQRT12 = math.sqrt(12.0)
Profile = NumericProfile | CategoricalProfile
Sketch = NumericSketch | CategorySketch
Detector = ADWIN | PageHinkley | CUSUM
IntArray = npt.NDArray[np.intp]


def profiles_of(baseline: BaselineProfile) -> dict[str, Profile]:
    """Every monitored column of a baseline: features, prediction and score."""
    profiles: dict[str, Profile] = dict(baseline.features)
    if baseline.prediction is not None:
        profiles[PREDICTION] = baseline.prediction
    if baseline.score is not None:
        profiles[SCORE] = baseline.score
    return profiles


def kind_of(profile: Profile) -> str:
    return NUMERIC if isinstance(profile, NumericProfile) else CATEGORICAL


def default_feature_settings(name: str, kind: str) -> FeatureSettings:
    """Default statistics (and detectors, for numeric columns) for one column."""
    names = DEFAULT_NUMERIC_STATISTICS if kind == NUMERIC else DEFAULT_CATEGORICAL_STATISTICS
    statistics = tuple(
        StatisticSetting(n, stats.STATISTICS[n].threshold, stats.STATISTICS[n].critical)
        for n in names
    )
    detectors = DETECTORS if kind == NUMERIC else ()
    return FeatureSettings(name, kind, statistics, detectors)


def window_tests(settings: MonitorSettings) -> int:
    """The tests each window runs across every monitor sharing the budget (worst case).

    Per column: one significance gate per reference (however many
    statistics it gates), the quality checks and the CUSUM, if it runs one
    (its alarms in a window are one more test); times ``budget_monitors``.
    """
    references = 2 if settings.compare_previous else 1
    per_column = references + (CHECKS_PER_COLUMN if settings.quality is not None else 0)
    cusums = sum(CUSUM_NAME in feature.detectors for feature in settings.features)
    return max(per_column * len(settings.features) + cusums, 1) * settings.budget_monitors


def settings_from_baseline(baseline: BaselineProfile, **overrides: Any) -> MonitorSettings:
    """Settings that watch every column of ``baseline`` with the defaults."""
    features = tuple(
        default_feature_settings(name, kind_of(profile))
        for name, profile in profiles_of(baseline).items()
    )
    return MonitorSettings(model_id=baseline.model_id, features=features, **overrides)


class FeatureWatch:
    """One column's window sketches and detectors."""

    def __init__(self, feature: FeatureSettings, profile: Profile, settings: MonitorSettings):
        self.feature = feature
        self.profile = profile
        self.sketch = new_sketch(profile, settings.category_cap)
        self.previous: Sketch | None = None
        self.detectors: dict[str, Detector] = {
            name: _new_detector(name, settings) for name in feature.detectors
        }
        self.recent = np.zeros(0)
        self.outside = 0  # the open window's values beyond the baseline's range
        self.cusum_floor = float(settings.cusum["threshold"])  # type: ignore[arg-type]
        self.budgeted = settings.budget is not None

    def column(self, batch: Batch) -> np.ndarray:
        return column_of(self.feature, batch)

    def add(self, values: np.ndarray) -> None:
        if isinstance(self.sketch, NumericSketch):
            assert isinstance(self.profile, NumericProfile)
            self.sketch.update(values, nulls=np.isnan(values))
            self.outside += count_outside(values, self.profile)
        else:
            self.sketch.update(values)

    def significant(self, reference: str, level: float | None) -> bool:
        """Whether the window differs from ``reference`` beyond noise at ``level`` (the gate).

        Numeric columns test the binned KS statistic, categorical ones the
        largest share difference, against their tail bounds (``core.budget``).
        Without a level (no budget) every window passes.
        """
        if level is None:
            return True
        if reference == BASELINE:
            expected, other = self._baseline_vector(), self.profile.count
        else:
            assert self.previous is not None
            expected, other = counts_of(self.profile, self.previous), self.previous.count
        current = counts_of(self.profile, self.sketch)
        test = "ks" if isinstance(self.profile, NumericProfile) else "linf"
        value = stats.compute(test, expected, current)
        floor = critical_value(test, level, n=self.sketch.count, reference=other, bins=len(current))
        return value >= floor

    def references(self, with_previous: bool) -> list[str]:
        """What the open window is compared with: the baseline, maybe the last window."""
        if with_previous and self.previous is not None:
            return [BASELINE, PREVIOUS_WINDOW]
        return [BASELINE]

    def statistic(self, name: str, reference: str) -> float:
        current = counts_of(self.profile, self.sketch)
        if reference == BASELINE:
            expected = self._baseline_vector()
        else:
            assert self.previous is not None
            expected = counts_of(self.profile, self.previous)
        return statistic_between(name, self.profile, expected, current)

    def _baseline_vector(self) -> npt.NDArray[np.int64]:
        if isinstance(self.profile, NumericProfile):
            return np.asarray(self.profile.counts, dtype=np.int64)
        return self.profile.vector()

    def roll(self, min_count: int, keep: bool) -> None:
        """Close the window; with ``keep``, it becomes the previous one if it was big enough.

        Only ``compare_previous`` reads the previous window, so without it
        none is kept: less state to commit every batch.
        """
        if keep and self.sketch.count >= min_count:
            self.previous = self.sketch.copy()
        self.sketch.reset()
        self.outside = 0

    def standardised(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The baseline CDF of each value, centred and scaled to unit variance.

        A uniform variable has variance 1/12, so under no drift these values
        have mean about 0 and variance about 1 whatever the feature's unit
        or shape, and they are bounded (ADWIN's guarantee assumes that).
        """
        assert isinstance(self.profile, NumericProfile)
        return (self.profile.cdf(values) - 0.5) * SQRT12

    def feed(self, values: npt.NDArray[np.float64]) -> Fed:
        """The finite values standardised for the detectors; ``recent`` moves past them."""
        rows = np.flatnonzero(np.isfinite(values))
        z = self.standardised(values[rows])
        recent = np.concatenate([self.recent, _quantised(z)])
        self.recent = recent[-RECENT:].copy()  # not a view that keeps the batch alive
        return Fed(rows, z, recent, len(z))

    def to_state(self) -> dict[str, Any]:
        return {
            "sketch": self.sketch.to_state(),
            "previous": None if self.previous is None else self.previous.to_state(),
            "detectors": {name: _running(name, d) for name, d in self.detectors.items()},
            "recent": _packed_recent(self.recent),
            "outside": self.outside,
        }

    def restore(self, state: Mapping[str, Any], at: StatePath) -> None:
        """Load this column's part of a monitor state; ValueError names the key at fault.

        The settings decide which detectors run: a saved detector the
        settings no longer list is dropped, a newly listed one starts fresh.
        They also give the detectors' parameters (the state keeps only the
        running values), so a changed threshold applies from the next batch.
        """
        reader = StateReader(state, None, _WATCH_KEYS, at)
        self.sketch = restored_sketch(self.profile, reader.raw("sketch"), reader.child("sketch"))
        previous = reader.raw("previous")
        if previous is not None:
            self.previous = restored_sketch(self.profile, previous, reader.child("previous"))
        for name, detector_state in reader.mapping("detectors").items():
            cls = _DETECTOR_CLASSES.get(name)
            if cls is None:
                reader.fail("detectors", f"names an unknown detector {name!r}")
            if name in self.detectors:
                where = reader.child("detectors") / name
                if not isinstance(detector_state, Mapping):
                    where.wrong(None, "a mapping", detector_state)
                running = _unpacked(name, detector_state, where)
                full = {**running, **_parameters(name, self.detectors[name])}
                detector = self.detectors[name] = cls.from_state(full, where)
                if isinstance(detector, CUSUM):
                    # The budget's threshold holds until the next window; without
                    # a budget, or below the configured one, the configured one.
                    saved = detector.threshold if self.budgeted else self.cusum_floor
                    detector.retune(max(saved, self.cusum_floor))
        self.recent = _restored_recent(reader)
        self.outside = reader.count("outside")
        if self.outside > self.sketch.count:
            reader.fail("outside", f"exceeds the window's {self.sketch.count} values")


# What a window keeps of one column, and how two of them compare: shared by
# the monitors against their baseline and the champion-challenger comparison.


def new_sketch(profile: Profile, cap: int) -> Sketch:
    """An empty window sketch for a column: on the baseline's bins, or its categories."""
    if isinstance(profile, NumericProfile):
        return NumericSketch(np.asarray(profile.edges))
    return CategorySketch(cap=cap, categories=profile.categories)


def column_of(feature: FeatureSettings, batch: Batch) -> np.ndarray:
    if feature.kind == NUMERIC:
        return batch.numeric(feature.name)
    return batch.categorical(feature.name)


def counts_of(profile: Profile, sketch: Sketch) -> npt.NDArray[np.int64]:
    """A sketch's counts in the baseline's bins or categories."""
    if isinstance(sketch, NumericSketch):
        return sketch.counts
    assert isinstance(profile, CategoricalProfile)
    return sketch.vector(profile.categories)


def statistic_between(
    name: str, profile: Profile, expected: npt.NDArray[np.int64], current: npt.NDArray[np.int64]
) -> float:
    """Statistic ``name`` of ``current`` counts against ``expected`` ones."""
    if isinstance(profile, NumericProfile):
        return stats.compute(name, expected, current, points=profile.points(), scale=profile.std)
    return stats.compute(name, expected, current)


def restored_sketch(profile: Profile, state: Any, at: StatePath) -> Sketch:
    """A saved sketch, refused unless it fits the column's baseline.

    A numeric sketch is restored on the baseline's edges; its state keeps
    only their digest and refuses other edges or another bin count.
    """
    if isinstance(profile, NumericProfile):
        return NumericSketch.from_state(state, at, edges=profile.edges)
    return CategorySketch.from_state(state, at)


# Detector parameters come from the settings, so saved states leave them out.
_PARAMETERS = {
    ADWIN_NAME: ("delta", "clock", "max_buckets", "min_window_length", "grace_period"),
    PAGE_HINKLEY: ("min_instances", "delta", "threshold", "alpha", "mode"),
    # A CUSUM's threshold is the one in effect, which the budget moves (see
    # ModelMonitor._cusum_changes), so it stays in the saved state.
    CUSUM_NAME: ("shifts", "min_instances"),
}
# Page-Hinkley's running floats, saved as one base64 string of float64 values
# (``running``): as JSON numbers they took 2.1 KB of a 12-column monitor.
_PACKED_FLOATS = RUNNING_FLOATS  # min_increase None is saved as +inf


def _running(name: str, detector: Detector) -> dict[str, Any]:
    state = detector.to_state()
    for key in _PARAMETERS[name]:
        del state[key]
    if name == PAGE_HINKLEY:
        values = [math.inf if state[key] is None else state.pop(key) for key in _PACKED_FLOATS]
        state.pop("min_increase", None)
        state["running"] = base64.b64encode(np.array(values, _FLOAT64).tobytes()).decode("ascii")
    return state


def _unpacked(name: str, state: Mapping[str, Any], at: StatePath) -> dict[str, Any]:
    """A detector's saved running state as its own ``from_state`` reads it.

    Page-Hinkley states saved before the packing hold the named floats
    themselves, and pass through as they are.
    """
    if name != PAGE_HINKLEY or "shift" in state:
        return dict(state)
    if "running" not in state:
        at.fail_whole(f"is missing key {at.describe('running')}")
    reader = StateReader({"running": state["running"]}, None, ("running",), at)
    expected = f"base64 of {len(_PACKED_FLOATS)} float64 values"
    raw = canonical_base64(reader, "running", expected)
    if len(raw) != 8 * len(_PACKED_FLOATS):
        at.wrong("running", expected, state["running"])
    values = np.frombuffer(raw, dtype=_FLOAT64).tolist()
    floats = dict(zip(_PACKED_FLOATS, values, strict=True))
    if floats["min_increase"] == math.inf:
        floats["min_increase"] = None
    rest = {key: value for key, value in state.items() if key != "running"}
    return {**rest, **floats}


def _parameters(name: str, detector: Detector) -> dict[str, Any]:
    state = detector.to_state()
    return {key: state[key] for key in _PARAMETERS[name]}


def _new_detector(name: str, settings: MonitorSettings) -> Detector:
    if name == PAGE_HINKLEY:
        return PageHinkley(**settings.page_hinkley)  # type: ignore[arg-type]
    if name == CUSUM_NAME:
        return CUSUM(**settings.cusum)  # type: ignore[arg-type]
    return ADWIN(**settings.adwin)  # type: ignore[arg-type]


def _detector_threshold(detector: Detector) -> float:
    if isinstance(detector, PageHinkley | CUSUM):
        return float(detector.threshold)
    return float(detector.delta)


class ModelMonitor:
    """All monitors of one model (and model version), fed a batch at a time."""

    def __init__(self, settings: MonitorSettings, baseline: BaselineProfile) -> None:
        self.settings = settings
        self.baseline = baseline
        profiles = profiles_of(baseline)
        self.watches = {
            f.name: FeatureWatch(f, _profile_for(f, profiles), settings) for f in settings.features
        }
        self.clock: Clock = new_clock(settings.window)
        self.window_episodes = WindowEpisodes(settings.episodes)
        self.detector_episodes = DetectorEpisodes(settings.episodes)
        self.events = 0
        self.last_values: dict[tuple[str, str, str], float] = {}
        self.readings: list[Reading] = []  # of the windows the last update judged

    def update(self, batch: Batch) -> list[Finding]:
        """Feed one micro-batch; returns the findings it triggered, by row."""
        return update_monitors([(self, batch)])[0]

    def _columns(self, batch: Batch) -> dict[str, np.ndarray]:
        return {name: watch.column(batch) for name, watch in self.watches.items()}

    def _finish(
        self, batch: Batch, columns: Mapping[str, np.ndarray], detected: list[Finding]
    ) -> list[Finding]:
        """Windows, after the detectors ran: fill, close and judge; all findings by row."""
        self.readings = []
        findings = detected
        for segment in self.clock.plan(batch.ts):
            for name, watch in self.watches.items():
                watch.add(columns[name][segment.start : segment.stop])
            self.clock.add(batch.ts[segment.start : segment.stop])
            if segment.closes:
                findings += self._close_window(batch, segment.trigger)
        self.events += len(batch)
        return sorted(findings, key=lambda finding: finding.row)

    def _detected(
        self,
        watch: FeatureWatch,
        fed: Fed,
        positions: Mapping[str, IntArray],
        batch: Batch,
        stretches: Mapping[str, list[Stretch]],
    ) -> list[Finding]:
        """Findings of one column's detectors, from the positions where each fired.

        ``stretches`` give a CUSUM's thresholds over the batch, where the
        budget moved it; other detectors report their fixed threshold.
        """
        findings = []
        for name, detector in watch.detectors.items():
            fixed = _detector_threshold(detector)
            key = f"{watch.feature.name}|{name}"
            detections = (self.events + fed.rows[positions[name]]).tolist()
            for kind, position in self.detector_episodes.advance(
                key, detections, self.events + len(batch)
            ):
                row = position - self.events
                stop = len(fed.recent) - fed.count + _rank(fed.rows, row)
                level = _recent_mean(fed.recent, stop)
                threshold = _threshold_at(stretches.get(name, []), _rank(fed.rows, row) - 1, fixed)
                findings.append(
                    self._detector_finding(kind, watch, name, level, threshold, batch, row)
                )
        return findings

    def _detector_finding(
        self,
        kind: str,
        watch: FeatureWatch,
        detector: str,
        level: float,
        threshold: float,
        batch: Batch,
        row: int,
    ) -> Finding:
        ts = float(batch.ts[row])
        return Finding(
            kind=kind,
            model_id=self.settings.model_id,
            model_version=self.settings.model_version,
            feature=watch.feature.name,
            detector=detector,
            statistic="mean_shift",
            value=level,
            threshold=threshold,
            severity="warning" if kind == DRIFT else "info",
            reference=BASELINE,
            window_start=ts,
            window_end=ts,
            window_count=0,
            event_time=ts,
            row=row,
        )

    def _close_window(self, batch: Batch, trigger: int) -> list[Finding]:
        bounds = self.clock.close()
        min_count = self.settings.window.min_count
        budget = self.settings.budget
        span = bounds.end - bounds.start
        level = None if budget is None else budget.level(window_tests(self.settings), span)
        findings = []
        for watch in self.watches.values():
            if bounds.count >= min_count:
                findings += self._judge(watch, bounds, batch, trigger, level)
                findings += self._judge_quality(watch, bounds, batch, trigger, level)
            watch.roll(min_count, self.settings.compare_previous)
        return findings

    def _cusum_changes(self, ts: npt.NDArray[np.float64]) -> list[tuple[int, float]]:
        """(batch row, threshold): what each window this batch closes sets for the rows after it.

        With a budget, a closed window's test level, shared over its
        events, sets the CUSUMs' threshold for the next window (never below
        the configured one). The detectors run before the windows close, so
        the closes are found here first, on a copy of the clock: the switch
        then falls on the same event however the stream is batched.
        """
        budget = self.settings.budget
        if budget is None or not any(CUSUM_NAME in f.detectors for f in self.settings.features):
            return []
        clock, changes = copy.copy(self.clock), []
        floor = float(self.settings.cusum["threshold"])  # type: ignore[arg-type]
        for segment in clock.plan(ts):
            clock.add(ts[segment.start : segment.stop])
            if segment.closes:
                bounds = clock.close()
                if bounds.count:
                    level = budget.level(window_tests(self.settings), bounds.end - bounds.start)
                    changes.append((segment.stop, threshold_for_rate(level / bounds.count, floor)))
        return changes

    def _judge(
        self, watch: FeatureWatch, bounds: Bounds, batch: Batch, row: int, level: float | None
    ) -> list[Finding]:
        findings = []
        for reference in watch.references(self.settings.compare_previous):
            noise = not watch.significant(reference, level)
            for setting in watch.feature.statistics:
                value = watch.statistic(setting.name, reference)
                self.last_values[(watch.feature.name, setting.name, reference)] = value
                self.readings.append(
                    Reading(
                        watch.feature.name,
                        setting.name,
                        reference,
                        value,
                        setting.threshold,
                        bounds.start,
                        bounds.end,
                        bounds.count,
                    )
                )
                info = stats.STATISTICS[setting.name]
                key = f"{watch.feature.name}|{setting.name}|{reference}"
                # A window within noise of its reference counts as calm, whatever its value.
                observed = value if not noise else (0.0 if info.higher_is_drift else 1.0)
                kind = self.window_episodes.observe(
                    key, observed, setting.threshold, info.higher_is_drift
                )
                if kind is not None:
                    severity = "info"
                    if kind == DRIFT:
                        severity = stats.severity(info, value, setting.threshold, setting.critical)
                    findings.append(
                        Finding(
                            kind=kind,
                            model_id=self.settings.model_id,
                            model_version=self.settings.model_version,
                            feature=watch.feature.name,
                            detector="window",
                            statistic=setting.name,
                            value=value,
                            threshold=setting.threshold,
                            severity=severity,
                            reference=reference,
                            window_start=bounds.start,
                            window_end=bounds.end,
                            window_count=bounds.count,
                            event_time=float(batch.ts[row]),
                            row=row,
                        )
                    )
        return findings

    def _judge_quality(
        self, watch: FeatureWatch, bounds: Bounds, batch: Batch, row: int, level: float | None
    ) -> list[Finding]:
        """The data-quality checks of one column's closed window, through the same hysteresis.

        A check's episode opens on a failed window and resolves after
        ``resolve_windows`` clean ones, so a column that stays broken pages once.
        The budget's level, when stricter, replaces ``quality.false_alarm``.
        """
        quality = self.settings.quality
        if quality is None:
            return []
        if level is not None and level < quality.false_alarm:
            quality = replace(quality, false_alarm=level)
        findings = []
        outside = watch.outside if isinstance(watch.sketch, NumericSketch) else None
        results = judge_quality(watch.sketch, watch.profile, quality, outside=outside)
        for result in results:
            key = f"{watch.feature.name}|{QUALITY}|{result.check}"
            opened = self.window_episodes.observe(
                key, result.value, result.threshold, result.higher_is_worse
            )
            if opened is None:
                continue
            findings.append(
                quality_finding(
                    result,
                    kind=QUALITY if opened == DRIFT else RESOLVED,
                    model_id=self.settings.model_id,
                    model_version=self.settings.model_version,
                    feature=watch.feature.name,
                    window_start=bounds.start,
                    window_end=bounds.end,
                    window_count=bounds.count,
                    event_time=float(batch.ts[row]),
                    row=row,
                )
            )
        return findings

    def to_state(self) -> dict[str, Any]:
        """The whole running state as JSON-able plain data."""
        return {
            "kind": "model_monitor",
            "version": STATE_VERSION,
            "model_id": self.settings.model_id,
            "model_version": self.settings.model_version,
            "events": self.events,
            "clock": self.clock.to_state(),
            "window_episodes": self.window_episodes.to_state(),
            "detector_episodes": self.detector_episodes.to_state(),
            "features": {name: watch.to_state() for name, watch in self.watches.items()},
        }

    @classmethod
    def from_state(
        cls,
        settings: MonitorSettings,
        baseline: BaselineProfile,
        state: Mapping[str, Any],
        at: StatePath | None = None,
    ) -> ModelMonitor:
        """Rebuild a monitor from ``to_state()`` output and the same settings.

        Every part is read strictly; a ValueError names the key path at
        fault. The settings decide which columns are watched: a saved column
        they no longer list is dropped, a newly listed one starts fresh.
        """
        reader = StateReader(state, "model_monitor", _MONITOR_KEYS, at or StatePath("monitor"))
        _check_model(reader, settings)
        monitor = cls(settings, baseline)
        monitor.events = reader.count("events")
        monitor.clock = clock_from_state(reader.raw("clock"), reader.child("clock"))
        monitor.window_episodes = WindowEpisodes.from_state(
            settings.episodes, reader.raw("window_episodes"), reader.child("window_episodes")
        )
        monitor.detector_episodes = DetectorEpisodes.from_state(
            settings.episodes, reader.raw("detector_episodes"), reader.child("detector_episodes")
        )
        features = reader.child("features")
        for name, watch_state in reader.mapping("features").items():
            if name in monitor.watches:
                monitor.watches[name].restore(watch_state, features / name)
        return monitor


@dataclass
class Fed:
    """What one column's detectors were fed in a batch."""

    rows: IntArray  # batch rows with a finite value
    z: npt.NDArray[np.float64]  # their standardised values
    recent: npt.NDArray[np.float64]  # the recent values before them, then them
    count: int  # len(z)


def update_monitors(work: Sequence[tuple[ModelMonitor, Batch]]) -> list[list[Finding]]:
    """Feed each monitor its batch; every detector of every monitor runs in one pass.

    Equivalent to ``monitor.update(batch)`` for each pair in turn (the
    monitors are independent), but the sequential detectors of all of them
    are updated together, so the fixed cost of a detector call is paid once
    per batch rather than once per column of each monitor. With many small
    monitors (models, versions, segments) that fixed cost would dominate.
    """
    columns = [monitor._columns(batch) for monitor, batch in work]
    fed: list[dict[str, Fed]] = []
    adwins: list[ADWIN] = []
    adwin_values: list[npt.NDArray[np.float64]] = []
    hinkleys: list[PageHinkley] = []
    hinkley_values: list[npt.NDArray[np.float64]] = []
    cusums: list[tuple[CUSUM, npt.NDArray[np.float64], list[Stretch]]] = []
    for (monitor, batch), cols in zip(work, columns, strict=True):
        fed.append({})
        changes = monitor._cusum_changes(batch.ts)
        for name, watch in monitor.watches.items():
            if not watch.detectors:
                continue
            column_fed = fed[-1][name] = watch.feed(cols[name])
            for detector in watch.detectors.values():
                if isinstance(detector, ADWIN):
                    adwins.append(detector)
                    adwin_values.append(column_fed.z)
                elif isinstance(detector, CUSUM):
                    stretches = _stretches(detector.threshold, changes, column_fed)
                    cusums.append((detector, column_fed.z, stretches))
                else:
                    hinkleys.append(detector)
                    hinkley_values.append(column_fed.z)
    found = dict(zip(map(id, adwins), update_adwins(adwins, adwin_values), strict=True))
    hits = update_page_hinkleys(hinkleys, hinkley_values)
    found.update(zip(map(id, hinkleys), hits, strict=True))
    found.update(_run_cusums(cusums))
    stretched = {id(detector): stretches for detector, _, stretches in cusums}
    results = []
    for (monitor, batch), cols, monitor_fed in zip(work, columns, fed, strict=True):
        detected: list[Finding] = []
        for name, column_fed in monitor_fed.items():
            watch = monitor.watches[name]
            positions = {d: found[id(detector)] for d, detector in watch.detectors.items()}
            thresholds = {
                d: stretched[id(detector)]
                for d, detector in watch.detectors.items()
                if id(detector) in stretched
            }
            detected += monitor._detected(watch, column_fed, positions, batch, thresholds)
        results.append(monitor._finish(batch, cols, detected))
    return results


Stretch = tuple[int, int, float]
"""Values ``[start, stop)`` of a column a CUSUM judges at one threshold."""


def _stretches(current: float, changes: list[tuple[int, float]], fed: Fed) -> list[Stretch]:
    """A CUSUM's column cut where its threshold changes (``changes`` are in batch rows)."""
    stretches, start = [], 0
    for row, threshold in changes:
        if threshold != current:
            stop = int(np.searchsorted(fed.rows, row))
            stretches.append((start, stop, current))
            start, current = stop, threshold
    stretches.append((start, fed.count, current))
    return stretches


def _run_cusums(
    work: Sequence[tuple[CUSUM, npt.NDArray[np.float64], list[Stretch]]],
) -> dict[int, IntArray]:
    """Every CUSUM over its column, one bank pass per stretch; detections by ``id``.

    Most batches have one stretch per detector: the threshold changes only
    when the traffic's rate moves it by a quarter or more.
    """
    found: dict[int, list[IntArray]] = {id(detector): [] for detector, _, _ in work}
    for step in range(max((len(stretches) for _, _, stretches in work), default=0)):
        detectors, columns, starts = [], [], []
        for detector, z, stretches in work:
            if step < len(stretches):
                start, stop, threshold = stretches[step]
                if detector.threshold != threshold:
                    detector.retune(threshold)
                detectors.append(detector)
                columns.append(z[start:stop])
                starts.append(start)
        for detector, hits, start in zip(
            detectors, update_cusums(detectors, columns), starts, strict=True
        ):
            found[id(detector)].append(hits + start)
    return {key: np.concatenate(parts) for key, parts in found.items()}


def _threshold_at(stretches: list[Stretch], index: int, fixed: float) -> float:
    """The threshold a value of a column was judged at: its stretch's, else ``fixed``."""
    for start, stop, threshold in stretches:
        if start <= index < stop:
            return threshold
    return stretches[-1][2] if stretches else fixed


def _profile_for(feature: FeatureSettings, profiles: Mapping[str, Profile]) -> Profile:
    profile = profiles.get(feature.name)
    if profile is None:
        msg = (
            f"feature {feature.name!r} is not in the baseline; baseline columns: {sorted(profiles)}"
        )
        raise ValueError(msg)
    if kind_of(profile) != feature.kind:
        msg = (
            f"feature {feature.name!r} is configured as {feature.kind} "
            f"but the baseline profiles it as {kind_of(profile)}"
        )
        raise ValueError(msg)
    if feature.kind == CATEGORICAL and feature.detectors:
        msg = f"feature {feature.name!r}: detectors need a numeric feature"
        raise ValueError(msg)
    return profile


def _rank(rows: npt.NDArray[np.intp], row: int) -> int:
    """How many finite values come before ``row`` in the batch, plus one."""
    return int(np.searchsorted(rows, row, side="right"))


def _quantised(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.rint(z * RECENT_STEPS) / RECENT_STEPS


def _packed_recent(recent: npt.NDArray[np.float64]) -> str:
    """``recent`` for a saved state: base64 of its steps as little-endian int16.

    A list of numbers took about 5 bytes a value, twice this: 1.6 KB of a
    monitor's state with 12 numeric columns.
    """
    steps = np.rint(recent * RECENT_STEPS).astype(_RECENT_DTYPE)
    return base64.b64encode(steps.tobytes()).decode("ascii")


def _restored_recent(reader: StateReader) -> npt.NDArray[np.float64]:
    """What ``_packed_recent`` saved; the list of integers older states hold is read too."""
    if isinstance(reader.raw("recent"), list):
        steps = reader.array("recent")
        for i, step in enumerate(steps):
            if type(step) is not int or abs(step) > RECENT_LIMIT:
                reader.child("recent").wrong(f"[{i}]", f"an integer within ±{RECENT_LIMIT}", step)
        values = np.asarray(steps, dtype=np.int64)
    else:
        expected = f"base64 of at most {RECENT} little-endian int16 values"
        raw = canonical_base64(reader, "recent", expected)
        if len(raw) % 2:
            reader.fail("recent", f"must hold whole int16 values, got {len(raw)} bytes")
        values = np.frombuffer(raw, dtype=_RECENT_DTYPE).astype(np.int64)
        if values.size and int(np.abs(values).max()) > RECENT_LIMIT:
            reader.fail("recent", f"holds a step beyond ±{RECENT_LIMIT}")
    if len(values) > RECENT:
        reader.fail("recent", f"must hold at most {RECENT} values, got {len(values)}")
    return values.astype(np.float64) / RECENT_STEPS


def _recent_mean(values: npt.NDArray[np.float64], stop: int) -> float:
    """Mean of the up to ``RECENT`` standardised values ending just before ``stop``."""
    window = values[max(0, stop - RECENT) : stop]
    return float(np.mean(window)) if len(window) else math.nan


def _check_model(reader: StateReader, settings: MonitorSettings) -> None:
    model_id = reader.text("model_id")
    if model_id != settings.model_id:
        msg = f"monitor state is for model {model_id!r}, not {settings.model_id!r}"
        raise ValueError(msg)
    # The version is a label from the settings, which may change between runs.
    reader.text("model_version")
