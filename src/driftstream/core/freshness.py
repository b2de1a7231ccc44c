"""Data freshness: models that fall silent while others flow, and baselines grown old.

One partition unit sees the events of several models. Its *watermark* is the
latest event time it has seen from any of them. A model whose own latest
event lies more than ``max_silence_seconds`` behind the watermark has gone
silent: its producer stopped, or its events are lost upstream, while the
clock kept moving for the others. Time is event time throughout, never the
wall clock, so a replay of last month finds the silences the live run found.

A model's baseline is old when the watermark is more than
``max_model_age_days`` past the baseline's creation time: the model was
trained on a world that may no longer exist.

Each condition is an episode: one ``quality`` finding when it starts, one
``resolved`` finding when it ends (a silent model's events come back; an old
baseline is replaced by a newer one).

**When and where.** Freshness is judged at the end of each batch given to
:meth:`FreshnessWatch.observe`, so a model that returns within the batch
that pushes the watermark past its silence is not reported at all. A
finding's ``row`` is always an event of the batch being observed:

* a silence (or old baseline) that starts: the batch's first event later
  than the model's latest time (or the baseline's creation) plus the limit,
  the event that moved the watermark past it. When ``ts`` is in the order
  the unit read its events, that event does not depend on how the stream
  was cut into batches, and neither does the alert's id;
* a silence that ends: the model's first event in the batch within the
  limit of the watermark;
* anything else (an episode a settings change opened or closed, an old
  baseline replaced): the batch's latest event.

**Bounds.** Only models that have had events in this unit are watched: a
model never seen here never raises a silence (its traffic may live on
another partition). A watched model that ``created`` no longer lists is
dropped, so the state holds one small entry per model the caller serves.

**Caveats.** One event stamped far in the future moves the watermark with
it, and every other model reads as silent until time catches up; and after
a pause of the whole unit longer than ``max_silence_seconds``, models
absent from the first batch after it read as silent until their next event.

>>> import numpy as np
>>> watch = FreshnessWatch(FreshnessSettings(max_silence_seconds=60.0, max_model_age_days=None))
>>> models = {"fraud": None, "churn": None}
>>> watch.observe(np.array([0.0, 1.0]), {"fraud": [0], "churn": [1]}, models)
[]
>>> found = watch.observe(np.array([50.0, 70.0, 90.0]), {"churn": [0, 1, 2]}, models)
>>> [(f.kind, f.model_id, f.statistic, f.value, f.row, f.event_time) for f in found]
[('quality', 'fraud', 'silence', 90.0, 1, 70.0)]
>>> found = watch.observe(np.array([95.0, 96.0]), {"fraud": [0], "churn": [1]}, models)
>>> [(f.kind, f.model_id, f.value, f.row) for f in found]
[('resolved', 'fraud', 1.0, 0)]

``fraud``'s last event was at 0; the event at 70 (row 1) was the first
more than a minute past it, and ``fraud`` was back at 95.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.findings import BASELINE, RESOLVED, Finding
from driftstream.core.quality import QUALITY
from driftstream.core.state import STATE_VERSION, StatePath, StateReader

FRESHNESS = "__freshness__"
"""The ``feature`` of freshness findings: they are about a model as a whole.

The alert schema requires a non-empty feature; ``__routing__`` and
``__performance__`` name the model's other whole-model alerts the same way.
"""

SILENCE = "silence"
MODEL_AGE = "model_age"
DAY = 86_400.0

_KIND = "freshness"
_MODEL_KEYS = ("latest", "silent", "aged")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FreshnessSettings:
    """Limits of the freshness checks; None turns a check off."""

    # An hour of event time while other models' events flow is far beyond
    # normal batching and delivery jitter (seconds to minutes), yet short
    # enough to page while someone can still fix the producer the same day.
    max_silence_seconds: float | None = 3600.0
    # A quarter: a common retraining cadence, so an older baseline usually
    # means a retraining that did not happen.
    max_model_age_days: float | None = 90.0

    def __post_init__(self) -> None:
        _check_limit("quality.max_silence_seconds", self.max_silence_seconds)
        _check_limit("quality.max_model_age_days", self.max_model_age_days)


def _check_limit(name: str, value: float | None) -> None:
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (math.isfinite(value) and value > 0):
        msg = f"{name} must be a finite number > 0, or null to turn the check off, got {value!r}"
        raise ValueError(msg)


@dataclass
class _Model:
    """What the watch keeps per model: its latest event time and its open episodes."""

    latest: float
    silent: bool = False
    aged: bool = False


class FreshnessWatch:
    """Silence and baseline-age episodes for the models of one partition unit."""

    def __init__(self, settings: FreshnessSettings | None = None) -> None:
        self.settings = settings or FreshnessSettings()
        self._watermark: float | None = None
        self._models: dict[str, _Model] = {}

    @property
    def watermark(self) -> float | None:
        """The latest event time seen from any model (None before the first event)."""
        return self._watermark

    def latest(self, model_id: str) -> float | None:
        """The model's latest event time, or None if it is not watched."""
        model = self._models.get(model_id)
        return None if model is None else model.latest

    def observe(
        self,
        ts: npt.ArrayLike,
        rows: Mapping[str, npt.ArrayLike],
        created: Mapping[str, float | None],
    ) -> list[Finding]:
        """Count one batch of the unit's events; the episodes it opens or closes.

        ``ts`` holds the event times of the batch's events, every model's,
        in the order the unit read them; a finding's ``row`` indexes it.
        ``rows`` maps each model with events in the batch to the indices of
        its events in ``ts``. ``created`` maps every model the caller serves
        to its baseline's creation time (epoch seconds; None when unknown,
        which skips the age check); watched models it no longer lists are
        dropped. Findings come out sorted by model, a silence before an age.
        """
        times = _times(ts)
        own = {model: _rows(model, indices, times.size, created) for model, indices in rows.items()}
        births = {m: _created(m, created[m]) for m in created if m in own or m in self._models}
        for model in [m for m in self._models if m not in created]:
            del self._models[model]
        if times.size == 0:
            return []
        newest = int(np.argmax(times))
        self._watermark = max(self._watermark or -math.inf, float(times[newest]))
        before = {}
        for model, indices in own.items():
            latest = float(times[indices].max())
            entry = self._models.setdefault(model, _Model(latest))
            before[model] = entry.latest
            entry.latest = max(entry.latest, latest)
        findings = []
        for model in sorted(self._models):
            findings += self._silence(model, times, own.get(model), before.get(model), newest)
            findings += self._age(model, births[model], times, newest)
        return findings

    def _silence(
        self,
        model: str,
        times: FloatArray,
        own: npt.NDArray[np.intp] | None,
        before: float | None,
        newest: int,
    ) -> list[Finding]:
        limit = self.settings.max_silence_seconds
        entry = self._models[model]
        if limit is None or self._watermark is None:
            return []
        behind = self._watermark - entry.latest
        if not entry.silent and behind > limit:
            entry.silent = True
            row = _first_past(times, entry.latest + limit, newest)
            start = entry.latest
        elif entry.silent and behind <= limit:
            entry.silent = False
            row = newest
            if own is not None:
                back = own[times[own] >= self._watermark - limit]
                row = int(back[0]) if back.size else newest
            start = entry.latest if before is None else before
        else:
            return []
        kind = QUALITY if entry.silent else RESOLVED
        return [self._finding(kind, model, SILENCE, behind, limit, start, times, row)]

    def _age(
        self, model: str, created: float | None, times: FloatArray, newest: int
    ) -> list[Finding]:
        limit = self.settings.max_model_age_days
        entry = self._models[model]
        if limit is None or created is None or self._watermark is None:
            return []
        # The watermark never goes back, so an episode can only end when a
        # newer baseline (a later creation time) or a higher limit arrives.
        age = (self._watermark - created) / DAY
        if not entry.aged and age > limit:
            entry.aged = True
            row = _first_past(times, created + limit * DAY, newest)
        elif entry.aged and age <= limit:
            entry.aged = False
            row = newest
        else:
            return []
        kind = QUALITY if entry.aged else RESOLVED
        return [self._finding(kind, model, MODEL_AGE, age, limit, created, times, row)]

    def _finding(
        self,
        kind: str,
        model: str,
        statistic: str,
        value: float,
        limit: float,
        start: float,
        times: FloatArray,
        row: int,
    ) -> Finding:
        """A freshness finding; its window spans from ``start`` to the watermark, with no events."""
        assert self._watermark is not None
        key = "last_event_time" if statistic == SILENCE else "created"
        return Finding(
            kind=kind,
            model_id=model,
            model_version="",
            feature=FRESHNESS,
            detector=QUALITY,
            statistic=statistic,
            value=value,
            threshold=limit,
            severity="warning" if kind == QUALITY else "info",
            reference=BASELINE,
            window_start=start,
            window_end=self._watermark,
            window_count=0,
            event_time=float(times[row]),
            row=row,
            details={key: start},
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "version": STATE_VERSION,
            "watermark": self._watermark,
            "models": {
                name: {"latest": model.latest, "silent": model.silent, "aged": model.aged}
                for name, model in sorted(self._models.items())
            },
        }

    @classmethod
    def from_state(
        cls, settings: FreshnessSettings, state: Mapping[str, Any], at: StatePath | None = None
    ) -> FreshnessWatch:
        """Rebuild a watch saved by :meth:`to_state`; ValueError names the key at fault.

        The state holds no limits: the ``settings`` given here apply from
        the next batch on, opening or closing episodes a changed limit calls for.
        """
        reader = StateReader(state, _KIND, ["watermark", "models"], at or StatePath(_KIND))
        watch = cls(settings)
        watch._watermark = reader.optional_number("watermark")
        for name, value in reader.mapping("models").items():
            item = StateReader(value, None, _MODEL_KEYS, reader.child("models") / name)
            latest = item.number("latest")
            if watch._watermark is None or latest > watch._watermark:
                item.fail("latest", f"must be at most the watermark, got {latest!r}")
            watch._models[name] = _Model(latest, item.flag("silent"), item.flag("aged"))
        return watch


def _times(ts: npt.ArrayLike) -> FloatArray:
    times = np.asarray(ts, dtype=np.float64).reshape(-1)
    if not np.isfinite(times).all():
        msg = "event times must be finite"
        raise ValueError(msg)
    return times


def _rows(
    model: str, indices: npt.ArrayLike, size: int, created: Mapping[str, float | None]
) -> npt.NDArray[np.intp]:
    """A model's rows, ascending; the model must be one the caller serves."""
    if not isinstance(model, str) or not model:
        msg = f"a model id must be a non-empty string, got {model!r}"
        raise ValueError(msg)
    if model not in created:
        msg = f"model {model!r} has events but no entry in created"
        raise ValueError(msg)
    rows = np.sort(np.asarray(indices, dtype=np.intp).reshape(-1))
    if rows.size == 0 or rows[0] < 0 or rows[-1] >= size:
        msg = f"rows of model {model!r} must be a non-empty list of indices into ts"
        raise ValueError(msg)
    return rows


def _created(model: str, value: float | None) -> float | None:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if value is not None and not (valid and math.isfinite(value)):
        msg = f"created time of model {model!r} must be a finite number or None, got {value!r}"
        raise ValueError(msg)
    return None if value is None else float(value)


def _first_past(times: FloatArray, bound: float, fallback: int) -> int:
    """The first row with a time beyond ``bound``, else ``fallback``."""
    past = times > bound
    return int(np.argmax(past)) if past.any() else fallback
