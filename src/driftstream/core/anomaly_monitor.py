"""One model's anomaly events, rate-limited, and the anomaly rate of each window.

An :class:`AnomalyMonitor` scores every event of a batch with the model's
:class:`~driftstream.core.anomaly.AnomalyScorer`. Each event over the
threshold becomes a finding of kind ``"anomaly"`` that names the event
(``details.event_id``), its score, the threshold and the features that
contributed most. A :class:`~driftstream.core.anomaly.TokenBucket` lets at
most ``max_per_minute`` of them through per minute of event time, so one
broken upstream service cannot flood the alerts topic; the next finding let
through says how many were held back before it (``details.suppressed``).

The share of flagged events is itself watched. The scorer is calibrated to
flag a share ``rate`` of baseline-like traffic, so each closed window tests
its flagged count with the binomial test the quality checks use
(``quality.binomial_excess``, at ``false_alarm`` per window), and needs the
share to be at least ``min_factor`` times ``rate``: real traffic, whose
features are correlated, flags somewhat more than the independent
simulation the threshold came from, and that must not page. An episode of
kind ``"quality"`` (statistic ``anomaly_rate``) opens once and resolves
with the drift windows' hysteresis.

The monitor is plain data apart from the scorer, which is rebuilt from the
baseline (it holds no running state): ``to_state()`` keeps the bucket, the
window clock, the window's counts and the episodes.

>>> import numpy as np
>>> from driftstream.core.baseline import build_profile
>>> from driftstream.core.anomaly import AnomalyScorer
>>> rng = np.random.default_rng(0)
>>> baseline = build_profile({"x": rng.normal(size=10_000)}, model_id="m")
>>> settings = AnomalySettings(model_id="m", max_per_minute=1.0)
>>> monitor = AnomalyMonitor(settings, AnomalyScorer(baseline, rate=settings.rate))
>>> x = rng.uniform(-1.0, 1.0, size=1000)  # ordinary values
>>> x[[10, 20, 900]] = 1e6  # three outliers, the first two within a minute
>>> batch = Batch(np.arange(1000.0), {"x": x})
>>> found = monitor.update(batch, event_ids=np.array([f"e{i}" for i in range(1000)]))
>>> [(f.kind, f.row, f.details["event_id"], f.details["suppressed"]) for f in found]
[('anomaly', 10, 'e10', 0), ('anomaly', 900, 'e900', 1)]
>>> found[0].feature, found[0].details["top_features"][0]["feature"]
('x', 'x')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.anomaly import MAX_RATE, AnomalyScorer, TokenBucket
from driftstream.core.batch import Batch
from driftstream.core.budget import Budget
from driftstream.core.episodes import WindowEpisodes
from driftstream.core.findings import BASELINE, DRIFT, RESOLVED, Finding
from driftstream.core.quality import QUALITY, QualitySettings, binomial_excess, quality_finding
from driftstream.core.settings import EpisodeSettings, WindowSettings
from driftstream.core.state import STATE_VERSION, StatePath, StateReader
from driftstream.core.windows import Bounds, Clock, clock_from_state, new_clock

ANOMALY = "anomaly"
"""The ``kind`` of an anomaly finding, and its ``detector``."""
ANOMALY_RATE = "anomaly_rate"
"""The ``statistic`` of the quality episode on the share of flagged events."""
ANOMALY_FEATURE = "__anomaly__"
"""The ``feature`` of that episode: it is about the model's events as a whole."""
_STATE = "anomaly_monitor"
_KEYS = ("model_id", "events", "clock", "flagged", "episodes", "bucket")


@dataclass(frozen=True, kw_only=True)
class AnomalySettings:
    """How one model's events are scored, limited and watched; defaults and why.

    ``rate``: the share of baseline-like events flagged, 1e-4 (one in
    10,000: at 1,000 events/s, a few anomaly events a minute before the
    limit, enough to look at, too few to drown in). ``max_per_minute``: 10
    anomaly events per minute of event time per model, ``burst`` (default
    the same) at once. ``min_factor``: a window's flagged share must reach
    10 times ``rate`` before the anomaly rate pages (the threshold is
    calibrated on independent features; correlated real ones flag up to a
    few times more). ``columns``: the features scored (default all of the
    baseline's).
    """

    model_id: str
    rate: float = 1e-4
    max_per_minute: float = 10.0
    burst: int | None = None
    columns: tuple[str, ...] | None = None
    min_factor: float = 10.0
    watch_rate: bool = True  # the anomaly_rate quality check (off with the quality checks)
    false_alarm: float = QualitySettings.false_alarm
    budget: Budget | None = None  # the model's false-alarm budget, shared over budget_tests
    budget_tests: int = 1
    window: WindowSettings = field(default_factory=WindowSettings)
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= MAX_RATE:
            msg = f"anomaly.rate must be in (0, {MAX_RATE}], got {self.rate!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.max_per_minute) and self.max_per_minute > 0):
            msg = f"anomaly.max_per_minute must be a finite number > 0, got {self.max_per_minute!r}"
            raise ValueError(msg)
        if not self.min_factor >= 1.0:
            msg = f"anomaly.min_factor must be at least 1, got {self.min_factor!r}"
            raise ValueError(msg)
        QualitySettings(false_alarm=self.false_alarm)  # the same range check

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.max_per_minute, self.burst)


class AnomalyMonitor:
    """Anomaly findings of one model's events, and the anomaly-rate quality episode."""

    def __init__(self, settings: AnomalySettings, scorer: AnomalyScorer) -> None:
        self.settings = settings
        self.scorer = scorer
        self.bucket = settings.new_bucket()
        self.clock: Clock = new_clock(settings.window)
        self.flagged = 0  # in the open window
        self.episodes = WindowEpisodes(settings.episodes)
        self.events = 0
        # What the last update did, for metrics (not state).
        self.last_flagged = 0
        self.last_suppressed = 0
        self.quality = QualitySettings(
            false_alarm=settings.false_alarm, floor_rate=min(settings.rate, 1e-4)
        )

    def update(
        self,
        batch: Batch,
        *,
        event_ids: npt.NDArray[Any] | None = None,
        versions: npt.NDArray[Any] | None = None,
    ) -> list[Finding]:
        """Score a batch; the anomaly findings let through and any anomaly-rate episode, by row.

        ``event_ids`` and ``versions`` (one per row, optional) go into each
        anomaly finding.
        """
        scored = self.scorer.score(batch)
        rows = scored.rows
        admitted, dropped = self.bucket.admit_reporting(batch.ts[rows])
        self.last_flagged = int(rows.size)
        self.last_suppressed = int(rows.size - np.count_nonzero(admitted))
        findings = []
        for i in np.flatnonzero(admitted).tolist():
            row = int(rows[i])
            top = scored.top[i]
            details: dict[str, Any] = {
                "event_id": None if event_ids is None else str(event_ids[row]),
                "top_features": [{"feature": name, "surprise": value} for name, value in top],
                "suppressed": int(dropped[i]),
            }
            version = "" if versions is None else str(versions[row])
            findings.append(self._finding(batch, row, float(scored.scores[row]), version, details))
        findings += self._windows(batch, rows)
        self.events += len(batch)
        return sorted(findings, key=lambda finding: finding.row)

    def _finding(
        self, batch: Batch, row: int, score: float, version: str, details: dict[str, Any]
    ) -> Finding:
        ts = float(batch.ts[row])
        return Finding(
            kind=ANOMALY,
            model_id=self.settings.model_id,
            model_version=version,
            feature=details["top_features"][0]["feature"],
            detector=ANOMALY,
            statistic="score",
            value=score,
            threshold=self.scorer.threshold,
            severity="warning",
            reference=BASELINE,
            window_start=ts,
            window_end=ts,
            window_count=0,
            event_time=ts,
            row=row,
            details=details,
        )

    def _windows(self, batch: Batch, rows: npt.NDArray[np.int64]) -> list[Finding]:
        """Count flagged rows into the window clock; judge each window that closes."""
        findings = []
        for segment in self.clock.plan(batch.ts):
            low, high = np.searchsorted(rows, [segment.start, segment.stop])
            self.flagged += int(high - low)
            self.clock.add(batch.ts[segment.start : segment.stop])
            if segment.closes:
                findings += self._judge(self.clock.close(), batch, segment.trigger)
                self.flagged = 0
        return findings

    def _judge(self, bounds: Bounds, batch: Batch, row: int) -> list[Finding]:
        if not self.settings.watch_rate or bounds.count < self.settings.window.min_count:
            return []
        rate = self.settings.rate
        quality, budget = self.quality, self.settings.budget
        if budget is not None:
            level = budget.level(self.settings.budget_tests, bounds.end - bounds.start)
            if level < quality.false_alarm:
                quality = replace(quality, false_alarm=level)
        result = binomial_excess(
            ANOMALY_RATE,
            self.flagged,
            bounds.count,
            rate,
            (self.settings.min_factor - 1.0) * rate,
            quality,
        )
        if not result.applicable:
            return []
        opened = self.episodes.observe(ANOMALY_RATE, result.value, result.threshold, True)
        if opened is None:
            return []
        finding = quality_finding(
            result,
            kind=QUALITY if opened == DRIFT else RESOLVED,
            model_id=self.settings.model_id,
            model_version="",
            feature=ANOMALY_FEATURE,
            window_start=bounds.start,
            window_end=bounds.end,
            window_count=bounds.count,
            event_time=float(batch.ts[row]),
            row=row,
        )
        return [finding]

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": _STATE,
            "version": STATE_VERSION,
            "model_id": self.settings.model_id,
            "events": self.events,
            "clock": self.clock.to_state(),
            "flagged": self.flagged,
            "episodes": self.episodes.to_state(),
            "bucket": self.bucket.to_state(),
        }

    @classmethod
    def from_state(
        cls,
        settings: AnomalySettings,
        scorer: AnomalyScorer,
        state: Mapping[str, Any],
        at: StatePath | None = None,
    ) -> AnomalyMonitor:
        """Rebuild a monitor saved by :meth:`to_state`; ValueError names the key at fault.

        The settings give the bucket's limits: a saved bucket keeps its
        tokens (at most the configured burst), its clock and its count of
        suppressed events.
        """
        reader = StateReader(state, _STATE, _KEYS, at or StatePath(_STATE))
        model_id = reader.text("model_id")
        if model_id != settings.model_id:
            reader.fail("model_id", f"is {model_id!r}, not {settings.model_id!r}")
        monitor = cls(settings, scorer)
        monitor.events = reader.count("events")
        monitor.clock = clock_from_state(reader.raw("clock"), reader.child("clock"))
        monitor.flagged = reader.count("flagged")
        if monitor.flagged > monitor.events:
            reader.fail("flagged", f"exceeds the {monitor.events} events seen")
        monitor.episodes = WindowEpisodes.from_state(
            settings.episodes, reader.raw("episodes"), reader.child("episodes")
        )
        saved = TokenBucket.from_state(reader.raw("bucket"), reader.child("bucket"))
        monitor.bucket = saved.with_limits(settings.max_per_minute, settings.burst)
        return monitor
