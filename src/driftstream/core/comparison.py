"""Champion and challengers: each model version's outputs against the champion's.

A model often runs several versions side by side: a champion that serves
most traffic, and challengers or canaries on a share of it.
``VersionComparison.update(ts, versions, columns)`` cuts the model's traffic
into tumbling windows of event time (a :class:`~driftstream.core.windows.TimeClock`,
so the cuts never depend on how the stream was split into batches) and keeps,
in each window, one sketch per (version, column) of the prediction and/or the
score.

When a window closes it picks the champion: the configured version, or else
the version with the most events in the window (ties to the smallest name).
Every other version with at least ``min_count`` events (the champion needs as
many) is compared with it, column by column, with drift's windowed
statistics (:func:`driftstream.core.stats.compute`): the champion's sketch is
the expected distribution and the challenger's the current one, on the
baseline's bins. A column is judged only where both sketches hold
``min_count`` values (a version that sends no score is not compared on it).
A run of windows past a threshold is one episode per (challenger, column,
statistic) (:class:`~driftstream.core.episodes.WindowEpisodes`): a finding of
kind ``"comparison"`` when it opens and ``"resolved"`` when it closes, with
``model_version`` the challenger, ``reference`` ``"champion"`` and
``details`` naming both versions and their counts.

Why against the champion rather than the baseline: in the same window both
versions see the same traffic, so a shift of the inputs moves both alike,
and what the comparison shows is how the versions differ.

Both sides are samples, so each statistic has a noise floor set by both
counts. Between two samples of ``n`` and ``m`` events from one distribution
over ``k`` bins, PSI sits near ``(k - 1) * (1/n + 1/m)``: 0.076 with 20
baseline bins and 500 events a side, close to the 0.1 threshold. The JS
distance is noisier still: on the synthetic fraud score its median is 0.115
at 500 events a side, 0.08 at 1,000 and 0.057 at 2,000. Give challengers a
few thousand events per window (``seconds``, ``min_count``), or raise the
thresholds, to keep false alarms rare; with 6,000 and 2,000 events per
window, 200 windows raised none.

Bounds. At most ``max_versions`` versions are held: the versions with events
in the open window plus those with an open episode. Rows of a version that
finds the window full (``max_versions`` versions already, a configured
champion always has a slot) are ignored and counted in ``ignored``. A new
version that finds every slot held evicts the least recently seen version
without events in the open window, and with it its open episodes
(``evicted``). The runtime calls :meth:`VersionComparison.retire` when it
retires a version, which forgets it at once. The whole state goes out
through ``to_state()`` as plain JSON and back through ``from_state()``; a
restored comparison continues exactly as if it had never stopped.

A ``Reading`` of a comparison has the column, the statistic, the challenger's
count and the reference ``"<challenger> vs <champion>"``
(:func:`reading_reference`), so a timeline tells challengers and champions
apart.

>>> import numpy as np
>>> from driftstream.core.baseline import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"x": rng.normal(size=5000), "s": rng.beta(2, 5, 5000)},
...                         model_id="m", score="s")
>>> settings = comparison_settings_from_baseline(profile, seconds=60.0)
>>> comparison = VersionComparison(settings, profile)
>>> ts = np.arange(13_000) * 0.01  # two windows of 60 s, and the first event of a third
>>> versions = np.where(rng.random(13_000) < 0.7, "v1", "v2")
>>> scores = np.where(versions == "v2", rng.beta(3, 4, 13_000), rng.beta(2, 5, 13_000))
>>> findings = comparison.update(ts, versions, {"__score__": scores})
>>> sorted({(f.kind, f.model_version, f.reference) for f in findings})
[('comparison', 'v2', 'champion')]
>>> findings[0].details["champion"], findings[0].window_start, findings[0].window_end
('v1', 0.0, 60.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core import stats
from driftstream.core.baseline import BaselineProfile, CategoricalProfile, NumericProfile
from driftstream.core.batch import Batch
from driftstream.core.episodes import WindowEpisodes
from driftstream.core.findings import COMPARISON, DRIFT, RESOLVED, Finding, Reading
from driftstream.core.monitor import (
    column_of,
    counts_of,
    default_feature_settings,
    kind_of,
    new_sketch,
    profiles_of,
    restored_sketch,
    statistic_between,
)
from driftstream.core.settings import (
    PREDICTION,
    SCORE,
    ComparisonSettings,
    EpisodeSettings,
    FeatureSettings,
)
from driftstream.core.sketches import CategorySketch, NumericSketch
from driftstream.core.state import STATE_VERSION, StatePath, StateReader
from driftstream.core.windows import Bounds, TimeClock

DETECTOR = "comparison"
CHAMPION = "champion"
OUTPUTS = (PREDICTION, SCORE)
_STATE_KEYS = ("model_id", "clock", "ignored", "evicted", "versions")
_LANE_KEYS = ("name", "count", "sketches", "episodes")
Profile = NumericProfile | CategoricalProfile
Sketch = NumericSketch | CategorySketch


def reading_reference(challenger: str, champion: str) -> str:
    """The reference a comparison ``Reading`` names: the challenger, then the champion.

    >>> reading_reference("v2", "v1")
    'v2 vs v1'
    """
    return f"{challenger} vs {champion}"


def comparison_settings_from_baseline(
    baseline: BaselineProfile, **overrides: Any
) -> ComparisonSettings:
    """Settings comparing every output the baseline profiles, with drift's defaults.

    ``overrides`` replace any field, ``columns`` included.
    """
    columns = tuple(
        replace(default_feature_settings(name, kind_of(profile)), detectors=())
        for name, profile in profiles_of(baseline).items()
        if name in OUTPUTS
    )
    if not columns:
        msg = f"the baseline of model {baseline.model_id!r} profiles neither prediction nor score"
        raise ValueError(msg)
    return ComparisonSettings(**{"model_id": baseline.model_id, "columns": columns, **overrides})


class _Column:
    """One compared output: its settings, its baseline profile and the sketches it takes."""

    def __init__(self, setting: FeatureSettings, profile: Profile, cap: int) -> None:
        self.setting = setting
        self.profile = profile
        self.cap = cap

    def new_sketch(self) -> Sketch:
        return new_sketch(self.profile, self.cap)

    def values(self, batch: Batch) -> np.ndarray:
        return column_of(self.setting, batch)

    def statistic(self, name: str, expected: Sketch, current: Sketch) -> float:
        """``name`` between the champion's sketch (``expected``) and a challenger's."""
        return statistic_between(
            name, self.profile, counts_of(self.profile, expected), counts_of(self.profile, current)
        )

    def restored(self, state: Any, at: StatePath) -> Sketch:
        """A saved sketch, refused unless it fits this column's baseline and cap."""
        sketch = restored_sketch(self.profile, state, at)
        if isinstance(sketch, CategorySketch):
            assert isinstance(self.profile, CategoricalProfile)
            if sketch.categories != self.profile.categories:
                at.fail("categories", "differ from the baseline's: saved with another baseline")
            if sketch.cap != self.cap:
                at.fail("cap", f"must be the settings' category_cap {self.cap}, got {sketch.cap}")
        return sketch


class _Lane:
    """One held version: its sketches in the open window and its episodes."""

    def __init__(self, columns: Mapping[str, _Column], episodes: EpisodeSettings) -> None:
        self.count = 0  # events in the open window
        self.sketches = {name: column.new_sketch() for name, column in columns.items()}
        self.episodes = WindowEpisodes(episodes)

    def add(self, values: Mapping[str, np.ndarray], start: int, stop: int) -> None:
        for name, sketch in self.sketches.items():
            part = values[name][start:stop]
            if isinstance(sketch, NumericSketch):
                sketch.update(part, nulls=np.isnan(part))
            else:
                sketch.update(part)
        self.count += stop - start

    def reset(self) -> None:
        self.count = 0
        for sketch in self.sketches.values():
            sketch.reset()

    def to_state(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "count": self.count,
            "sketches": {column: sketch.to_state() for column, sketch in self.sketches.items()},
            "episodes": self.episodes.to_state(),
        }


class VersionComparison:
    """Every active version of one model against its champion, window by window."""

    def __init__(self, settings: ComparisonSettings, baseline: BaselineProfile) -> None:
        _check_settings(settings)
        self.settings = settings
        self.baseline = baseline
        self.columns = {
            c.name: _Column(c, _profile_for(c, baseline), settings.category_cap)
            for c in settings.columns
        }
        self._episode_keys = [
            _episode_key(c.name, s.name) for c in settings.columns for s in c.statistics
        ]
        self.clock = TimeClock(settings.seconds)
        self._lanes: dict[str, _Lane] = {}  # held versions, least recently seen first
        self.ignored = 0  # rows of versions that found their window full
        self.evicted = 0  # versions dropped, open episodes and all, to make room
        self.readings: list[Reading] = []  # of the windows the last update judged

    @property
    def versions(self) -> list[str]:
        """The versions held, least recently seen first."""
        return list(self._lanes)

    def update(
        self,
        ts: npt.NDArray[np.float64],
        versions: npt.NDArray[Any],
        columns: Mapping[str, np.ndarray],
    ) -> list[Finding]:
        """Feed rows in event order; returns the findings of the windows they close.

        ``versions`` holds each row's model version (str); ``columns`` the
        outputs by pseudo-feature name, an absent one counting as all missing.
        """
        self.readings = []
        batch = Batch(np.asarray(ts, dtype=np.float64), columns)
        names, codes = _version_codes(versions, len(batch))
        if len(batch) == 0:
            return []
        segments = self.clock.plan(batch.ts)
        # One stable sort groups the rows by (segment, version), each group in stream order.
        sizes = [segment.stop - segment.start for segment in segments]
        keys = np.repeat(np.arange(len(segments), dtype=np.int64), sizes) * len(names) + codes
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.flatnonzero(np.diff(ordered, prepend=-1))
        stops = np.append(starts[1:], len(ordered)).tolist()
        group_segment = (ordered[starts] // len(names)).tolist()
        group_name = [names[code] for code in (ordered[starts] % len(names)).tolist()]
        group_first = order[starts].tolist()
        values = {name: column.values(batch)[order] for name, column in self.columns.items()}
        findings: list[Finding] = []
        group = 0
        for index, segment in enumerate(segments):
            first = group
            while group < len(group_segment) and group_segment[group] == index:
                group += 1
            # Versions enter the window in the order they first appear in it.
            for g in sorted(range(first, group), key=group_first.__getitem__):
                start, stop = int(starts[g]), stops[g]
                lane = self._admit(group_name[g])
                if lane is None:
                    self.ignored += stop - start
                else:
                    lane.add(values, start, stop)
            self.clock.add(batch.ts[segment.start : segment.stop])
            if segment.closes:
                findings += self._close(batch.ts, segment.trigger)
        return findings

    def retire(self, version: str) -> None:
        """Forget ``version``: its sketches in the open window and its open episodes."""
        self._lanes.pop(version, None)

    def _admit(self, name: str) -> _Lane | None:
        """The lane of ``name`` for the open window, or None if the window is full."""
        lane = self._lanes.get(name)
        if lane is not None and lane.count:
            return lane
        if not self._has_room(name):
            return None
        if lane is None:
            if len(self._lanes) >= self.settings.max_versions:
                self._evict()
            lane = _Lane(self.columns, self.settings.episodes)
        else:
            del self._lanes[name]  # re-inserted below: now the most recently seen
        self._lanes[name] = lane
        return lane

    def _has_room(self, name: str) -> bool:
        champion = self.settings.champion
        if name == champion:
            return True
        active = sum(1 for n, lane in self._lanes.items() if lane.count and n != champion)
        return active < self.settings.max_versions - (champion is not None)

    def _evict(self) -> None:
        # Fewer versions than max_versions have events in the window, so one is idle.
        idle = next(name for name, lane in self._lanes.items() if not lane.count)
        del self._lanes[idle]
        self.evicted += 1

    def _champion(self, active: Mapping[str, _Lane]) -> str | None:
        if self.settings.champion is not None:
            return self.settings.champion if self.settings.champion in active else None
        if not active:
            return None
        return min(active, key=lambda name: (-active[name].count, name))

    def _close(self, ts: npt.NDArray[np.float64], trigger: int) -> list[Finding]:
        bounds = self.clock.close()
        min_count = self.settings.min_count
        active = {name: lane for name, lane in self._lanes.items() if lane.count}
        champion = self._champion(active)
        findings: list[Finding] = []
        if champion is not None and active[champion].count >= min_count:
            for name in sorted(active):
                if name != champion and active[name].count >= min_count:
                    findings += self._judge(champion, name, bounds, float(ts[trigger]), trigger)
        for name, lane in list(self._lanes.items()):
            lane.reset()
            if not any(lane.episodes.is_open(key) for key in self._episode_keys):
                del self._lanes[name]
        return findings

    def _judge(
        self, champion: str, challenger: str, bounds: Bounds, event_time: float, row: int
    ) -> list[Finding]:
        leader, lane = self._lanes[champion], self._lanes[challenger]
        details = {
            "champion": champion,
            "challenger": challenger,
            "champion_count": leader.count,
            "challenger_count": lane.count,
        }
        reference = reading_reference(challenger, champion)
        min_count = self.settings.min_count
        findings = []
        for name, column in self.columns.items():
            expected, current = leader.sketches[name], lane.sketches[name]
            if expected.count < min_count or current.count < min_count:
                continue
            for setting in column.setting.statistics:
                value = column.statistic(setting.name, expected, current)
                self.readings.append(
                    Reading(
                        name,
                        setting.name,
                        reference,
                        value,
                        setting.threshold,
                        bounds.start,
                        bounds.end,
                        lane.count,
                    )
                )
                info = stats.STATISTICS[setting.name]
                key = _episode_key(name, setting.name)
                kind = lane.episodes.observe(key, value, setting.threshold, info.higher_is_drift)
                if kind is None:
                    continue
                severity = "info"
                if kind == DRIFT:
                    severity = stats.severity(info, value, setting.threshold, setting.critical)
                findings.append(
                    Finding(
                        kind=COMPARISON if kind == DRIFT else RESOLVED,
                        model_id=self.settings.model_id,
                        model_version=challenger,
                        feature=name,
                        detector=DETECTOR,
                        statistic=setting.name,
                        value=value,
                        threshold=setting.threshold,
                        severity=severity,
                        reference=CHAMPION,
                        window_start=bounds.start,
                        window_end=bounds.end,
                        window_count=lane.count,
                        event_time=event_time,
                        row=row,
                        details=dict(details),
                    )
                )
        return findings

    def to_state(self) -> dict[str, Any]:
        """The whole running state as JSON-able plain data."""
        return {
            "kind": "version_comparison",
            "version": STATE_VERSION,
            "model_id": self.settings.model_id,
            "clock": self.clock.to_state(),
            "ignored": self.ignored,
            "evicted": self.evicted,
            "versions": [lane.to_state(name) for name, lane in self._lanes.items()],
        }

    @classmethod
    def from_state(
        cls,
        settings: ComparisonSettings,
        baseline: BaselineProfile,
        state: Mapping[str, Any],
        at: StatePath | None = None,
    ) -> VersionComparison:
        """Rebuild a comparison from ``to_state()`` output and the same settings.

        Every part is read strictly; a ValueError names the key path at
        fault. The settings decide which columns are compared: a saved
        column they no longer list is dropped, a newly listed one starts
        empty. A window length other than the settings' is refused.
        """
        reader = StateReader(
            state, "version_comparison", _STATE_KEYS, at or StatePath("comparison")
        )
        model_id = reader.text("model_id")
        if model_id != settings.model_id:
            reader.fail("model_id", f"is {model_id!r}, not the settings' {settings.model_id!r}")
        comparison = cls(settings, baseline)
        clock = TimeClock.from_state(reader.raw("clock"), reader.child("clock"))
        if clock.seconds != settings.seconds:
            problem = f"({clock.seconds!r}) differs from the settings' {settings.seconds!r}"
            reader.child("clock").fail("seconds", problem)
        comparison.clock = clock
        comparison.ignored = reader.count("ignored")
        comparison.evicted = reader.count("evicted")
        entries = reader.array("versions")
        if len(entries) > settings.max_versions:
            problem = f"must hold at most {settings.max_versions} versions, got {len(entries)}"
            reader.fail("versions", problem)
        for i, entry in enumerate(entries):
            where = reader.child("versions") / f"[{i}]"
            name, lane = comparison._restored_lane(entry, where)
            if name in comparison._lanes:
                where.fail("name", f"repeats version {name!r}")
            comparison._lanes[name] = lane
        champion = settings.champion
        active = [n for n, lane in comparison._lanes.items() if lane.count and n != champion]
        if len(active) > settings.max_versions - (champion is not None):
            reader.fail("versions", "hold more versions with events than max_versions allows")
        return comparison

    def _restored_lane(self, state: Any, at: StatePath) -> tuple[str, _Lane]:
        reader = StateReader(state, None, _LANE_KEYS, at)
        name = reader.text("name")
        lane = _Lane(self.columns, self.settings.episodes)
        lane.count = reader.count("count")
        where = reader.child("sketches")
        for column, sketch_state in reader.mapping("sketches").items():
            if column in self.columns:
                sketch = self.columns[column].restored(sketch_state, where / column)
                if sketch.total != lane.count:
                    problem = f"({lane.count}) differs from the rows of sketch {column!r}"
                    reader.fail("count", f"{problem} ({sketch.total})")
                lane.sketches[column] = sketch
        lane.episodes = WindowEpisodes.from_state(
            self.settings.episodes, reader.raw("episodes"), reader.child("episodes")
        )
        if not lane.count and not any(lane.episodes.is_open(k) for k in self._episode_keys):
            reader.fail(None, "holds a version with neither events nor an open episode")
        return name, lane


def _episode_key(column: str, statistic: str) -> str:
    return f"{column}|{statistic}"


def _version_codes(versions: npt.ArrayLike, rows: int) -> tuple[list[str], npt.NDArray[np.int64]]:
    """The distinct versions, sorted, and each row's index among them."""
    labels = np.asarray(versions)
    if labels.shape != (rows,):
        msg = f"versions must be 1-d with one entry per row ({rows}), got shape {labels.shape}"
        raise ValueError(msg)
    if rows == 0:
        return [], np.zeros(0, dtype=np.int64)
    msg = "versions must be strings"
    if labels.dtype.kind not in "UO":
        msg = f"versions must be strings, got dtype {labels.dtype}"
        raise ValueError(msg)
    try:
        distinct, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # an object array mixing str with other types
        raise ValueError(msg) from None
    names = distinct.tolist()
    if not all(isinstance(name, str) for name in names):
        raise ValueError(msg)
    return names, codes.reshape(-1).astype(np.int64)


def _check_settings(settings: ComparisonSettings) -> None:
    problems = []
    if not settings.columns:
        problems.append(f"columns must name {PREDICTION!r} and/or {SCORE!r}")
    names = [column.name for column in settings.columns]
    if len(set(names)) != len(names):
        problems.append(f"columns must be distinct, got {names}")
    if not settings.seconds > 0:
        problems.append(f"seconds must be > 0, got {settings.seconds!r}")
    if settings.min_count < 1:
        problems.append(f"min_count must be >= 1, got {settings.min_count}")
    if settings.max_versions < 2:
        problems.append(
            f"max_versions must be >= 2 (a champion and a challenger), got {settings.max_versions}"
        )
    for column in settings.columns:
        for setting in column.statistics:
            info = stats.STATISTICS.get(setting.name)
            if info is None:
                problems.append(
                    f"column {column.name!r}: unknown statistic {setting.name!r}; "
                    f"known: {sorted(stats.STATISTICS)}"
                )
            elif column.kind not in info.kinds:
                problems.append(
                    f"column {column.name!r}: statistic {setting.name!r} "
                    f"does not suit a {column.kind} column"
                )
    if problems:
        msg = f"comparison settings for model {settings.model_id!r}: " + "; ".join(problems)
        raise ValueError(msg)


def _profile_for(column: FeatureSettings, baseline: BaselineProfile) -> Profile:
    if column.name not in OUTPUTS:
        msg = (
            f"comparison column {column.name!r} is not a model output; "
            f"versions are compared on {PREDICTION!r} and {SCORE!r}"
        )
        raise ValueError(msg)
    profile = profiles_of(baseline).get(column.name)
    if profile is None:
        role = "prediction" if column.name == PREDICTION else "score"
        msg = (
            f"comparison column {column.name!r} is not in the baseline of model "
            f"{baseline.model_id!r}: the baseline has no {role} profile"
        )
        raise ValueError(msg)
    if kind_of(profile) != column.kind:
        msg = (
            f"comparison column {column.name!r} is configured as {column.kind} "
            f"but the baseline profiles it as {kind_of(profile)}"
        )
        raise ValueError(msg)
    return profile
