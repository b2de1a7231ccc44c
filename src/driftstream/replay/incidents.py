"""Known incidents, and how fast and how noisily a replay's alerts caught them.

A data scientist lists the incidents a stretch of traffic is known to hold,
replays that traffic through the worker's code, and scores the alerts it
wrote against the list: how long each incident took to page someone, which
ones nobody was paged for, and how many pages were false.

**The incidents file** (``.yaml``, ``.yml`` or ``.json``) holds a list of
incidents, or a mapping ``{"incidents": [...]}``. Each incident has:

- ``model_id`` (required): the model, as named in the config;
- ``start`` (required) and ``end`` (optional; absent or null means "until
  the end of the data"): event times, as RFC 3339 strings such as
  ``2026-01-01T10:00:00Z`` (an offset such as ``+02:00`` is allowed, a time
  without one is UTC) or as epoch seconds. YAML reads an unquoted timestamp
  as a date-time; that is accepted too. ``end`` must be after ``start``;
- ``features`` (optional): the features the incident touched, a non-empty
  list of distinct names; without it every feature counts;
- ``note`` (optional): free text, carried into the score.

Anything else is refused with the file, the incident's number (counting
from 1, as the file is read) and the key: unknown keys, a missing
``model_id`` or ``start``, a time that is neither form, an ``end`` not after
its ``start``, an empty, mistyped or repeating ``features`` list, and an
incident that repeats an earlier one.

**Scoring rules** (``score``):

- An *alarm* is an alert whose ``kind`` is not ``resolved``. The drift
  family (kinds ``drift``, ``quality`` and ``anomaly``) and ``performance``
  alarms are scored separately, into two scorecards with the same keys.
  Alerts are delivered at least once, so an ``alert_id`` seen again counts
  once. An alert of a kind not named here is refused, not guessed at.
- An alarm *detects* an incident when it is about the incident's model,
  ``start <= event_time <= end`` (no upper bound without an ``end``) and,
  for the drift family only, the incident lists no features or lists the
  alarm's ``feature``. Performance alarms ignore the features list (they are
  about the model as a whole). One alarm may detect overlapping incidents.
- For each incident, the *first* detecting alarm is the one with the
  earliest ``event_time`` (on a tie, the one earlier in the alert list).
  ``delay_seconds`` is its event time minus the incident's start;
  ``delay_events`` is the number of the model's prediction events in the
  incident with an event time before the alarm's (the triggering event
  itself is not counted), as ``EventTimes`` recorded them. ``by_detector``
  gives, per ``detector|statistic``, the first detecting alarm of that pair
  with its own delays.
- An incident no alarm detects is *missed*.
- A *false alarm* is an alarm that detects no incident, including one
  inside an incident's time range but on a feature the incident does not
  list, and one without an event time.
- ``false_alarms_per_day`` divides the false alarms by the days of data:
  for every model with prediction events, the time from its first to its
  last event, summed over those models, and at least one hour in total,
  so a short replay does not divide by almost nothing.
- Summary numbers are taken over detected incidents: the median and the
  90th percentile (numpy's default, linear) of ``delay_seconds`` and of
  ``delay_events``; ``None`` when there is nothing to summarise. An
  incident whose delay in events is unknown (past ``EventTimes``' cap) is
  left out of the ``delay_events`` numbers and flagged ``events_over_cap``.
  Each incident's entry also gives ``events``, the prediction events in its
  range, so a miss with none at all shows the replay did not cover it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import yaml

from driftstream.contract import parse_timestamp

__all__ = [
    "DRIFT_KINDS",
    "PERFORMANCE_KINDS",
    "RESOLVED",
    "EventTimes",
    "FirstAlarm",
    "Incident",
    "IncidentError",
    "IncidentResult",
    "Score",
    "Scorecard",
    "check_models",
    "load_incidents",
    "pareto",
    "score",
]

DRIFT_KINDS = frozenset({"drift", "quality", "anomaly"})
PERFORMANCE_KINDS = frozenset({"performance"})
RESOLVED = "resolved"

KEYS = ("model_id", "start", "end", "features", "note")
# The alert fields scoring reads; the rest of the contract is not needed.
ALERT_KEYS = ("kind", "model_id", "feature", "detector", "statistic", "event_time", "alert_id")
# Year 10000 starts here: RFC 3339 cannot write a later time.
MAX_TIME = 253402300800.0
# Days of data are at least this many seconds (see "false_alarms_per_day").
MIN_SPAN_SECONDS = 3600.0
SECONDS_PER_DAY = 86400.0


FloatArray = npt.NDArray[np.float64]


class IncidentError(ValueError):
    """An incidents file (or incident) that cannot be used; the message says where."""


@dataclass(frozen=True)
class Incident:
    """One known incident: a model misbehaving from ``start`` until ``end`` (event time).

    ``end`` ``None`` means until the end of the data; ``features`` ``None``
    means every feature.
    """

    model_id: str
    start: float
    end: float | None
    features: tuple[str, ...] | None
    note: str | None

    def covers(self, event_time: float) -> bool:
        """Whether an alarm at ``event_time`` falls in the incident (both ends included).

        >>> Incident("m", 10.0, 20.0, None, None).covers(20.0)
        True
        """
        return self.start <= event_time and (self.end is None or event_time <= self.end)


# ----------------------------------------------------------------------------- loading


def load_incidents(path: str | Path) -> list[Incident]:
    """Read and check an incidents file (YAML or JSON, by its suffix)."""
    path = Path(path)
    source = str(path)
    data = _read(path, source)
    items = _items(data, source)
    incidents = [_incident(item, f"{source}: incident {n}") for n, item in enumerate(items, 1)]
    _refuse_repeats(incidents, source)
    return incidents


def _read(path: Path, source: str) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        msg = f"{source}: unknown file type {suffix or '(none)'!r}; use .yaml, .yml or .json"
        raise IncidentError(msg)
    try:
        text = path.read_bytes()
    except OSError as error:
        msg = f"{source}: cannot read: {error.strerror}"
        raise IncidentError(msg) from None
    # JSON is read as JSON: YAML 1.1 refuses tab indentation and reads
    # 1.7e9 as a string, both of which are valid JSON numbers and layout.
    if suffix == ".json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as error:
            msg = f"{source}: not valid JSON: {error}"
            raise IncidentError(msg) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        msg = f"{source}: not valid YAML: {error}"
        raise IncidentError(msg) from None


def _items(data: Any, source: str) -> list[Any]:
    if isinstance(data, dict):
        if set(data) != {"incidents"}:
            keys = ", ".join(repr(key) for key in data)
            msg = f"{source}: a mapping must have the single key 'incidents' (found {keys})"
            raise IncidentError(msg)
        data = data["incidents"]
    if not isinstance(data, list):
        kind = "nothing" if data is None else type(data).__name__
        msg = f"{source}: expected a list of incidents, found {kind}"
        raise IncidentError(msg)
    return data


def _incident(item: Any, where: str) -> Incident:
    if not isinstance(item, dict):
        msg = f"{where}: expected a mapping with model_id and start, found {type(item).__name__}"
        raise IncidentError(msg)
    unknown = [key for key in item if key not in KEYS]
    if unknown:
        msg = f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(KEYS)})"
        raise IncidentError(msg)
    for key in ("model_id", "start"):
        if item.get(key) is None:
            msg = f"{where}: {key!r} is missing"
            raise IncidentError(msg)
    model_id = item["model_id"]
    if not isinstance(model_id, str) or not model_id:
        msg = f"{where}: 'model_id' must be a non-empty string, found {model_id!r}"
        raise IncidentError(msg)
    start = _time(item["start"], where, "start")
    end = None if item.get("end") is None else _time(item["end"], where, "end")
    if end is not None and end <= start:
        msg = f"{where}: 'end' {_text(end)} is not after 'start' {_text(start)}"
        raise IncidentError(msg)
    features = _features(item.get("features"), where)
    note = item.get("note")
    if note is not None and not isinstance(note, str):
        msg = f"{where}: 'note' must be text, found {note!r}"
        raise IncidentError(msg)
    return Incident(model_id, start, end, features, note)


def _time(value: Any, where: str, key: str) -> float:
    """Epoch seconds of an incident time, or an ``IncidentError`` naming ``key``."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        seconds: float | None = aware.timestamp()
    elif isinstance(value, date):
        msg = f"{where}: {key!r} is a date without a time of day: write {value}T00:00:00Z"
        raise IncidentError(msg)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = rfc3339_seconds(value)
    else:
        seconds = None
    if seconds is None:
        msg = f"{where}: {key!r} is not an RFC 3339 time or epoch seconds: {value!r}"
        raise IncidentError(msg + _number_hint(value))
    if not 0.0 <= seconds < MAX_TIME:
        millis = MAX_TIME <= seconds < MAX_TIME * 1000
        hint = " (milliseconds? times are in seconds)" if millis else ""
        msg = f"{where}: {key!r} {value!r} is outside 1970-01-01..9999-12-31{hint}"
        raise IncidentError(msg)
    return seconds


def _number_hint(value: Any) -> str:
    # YAML 1.1 reads 1.7e9 (no dot before the e, or no sign after it) as text.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (YAML read this number as text; write it in full, e.g. 1700000000)"
    return ""


def rfc3339_seconds(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 date-time, taking a time without an offset as UTC.

    ``None`` if ``text`` is not one. A leap second (``:60``) rolls over.

    >>> rfc3339_seconds("2026-01-01T12:00:00+02:00"), rfc3339_seconds("2026-01-01T10:00:00")
    (1767261600.0, 1767261600.0)
    >>> rfc3339_seconds("yesterday") is None
    True
    """
    return parse_timestamp(text, naive_utc=True)


def _text(seconds: float) -> str:
    """RFC 3339 text of epoch seconds, for messages."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _features(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        msg = f"{where}: 'features' must be a list of feature names, found {value!r}"
        raise IncidentError(msg)
    if not value:
        msg = f"{where}: 'features' is empty; leave it out to match every feature"
        raise IncidentError(msg)
    for name in value:
        if not isinstance(name, str) or not name:
            msg = f"{where}: 'features' must hold non-empty feature names, found {name!r}"
            raise IncidentError(msg)
        if value.count(name) > 1:
            msg = f"{where}: 'features' lists {name!r} more than once"
            raise IncidentError(msg)
    return tuple(value)


def _refuse_repeats(incidents: Sequence[Incident], source: str) -> None:
    seen: dict[tuple[Any, ...], int] = {}
    for n, incident in enumerate(incidents, 1):
        features = None if incident.features is None else frozenset(incident.features)
        key = (incident.model_id, incident.start, incident.end, features)
        if key in seen:
            msg = (
                f"{source}: incident {n} repeats incident {seen[key]} "
                "(same model_id, start, end and features)"
            )
            raise IncidentError(msg)
        seen[key] = n


def check_models(
    incidents: Sequence[Incident], model_ids: Collection[str], *, source: str = "incidents"
) -> None:
    """Refuse an incident whose model is not in the config, naming it.

    >>> check_models([Incident("fraud", 0.0, None, None, None)], ["churn"])
    Traceback (most recent call last):
    ...
    driftstream.replay.incidents.IncidentError: incidents: incident 1: model 'fraud' is not \
in the config (models: churn)
    """
    for n, incident in enumerate(incidents, 1):
        if incident.model_id not in model_ids:
            known = ", ".join(sorted(model_ids)) or "none"
            msg = (
                f"{source}: incident {n}: model {incident.model_id!r} is not in the config "
                f"(models: {known})"
            )
            raise IncidentError(msg)


# ----------------------------------------------------------------------------- event times


class _Kept:
    """The smallest ``cap`` event times one incident's range has seen, and how many it saw.

    Keeping the smallest times (not the first to arrive) keeps the count of
    times before ``t`` exact for every ``t`` up to the largest kept time,
    whatever order batches come in: every dropped time is at least that.
    Between compactions it holds at most one and a half ``cap`` times (plus
    one batch), so a replay arriving out of order does not sort ``cap``
    times on every batch.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen = 0
        # Once anything was dropped: every dropped time is >= bound.
        self.bound = math.inf
        self._chunks: list[FloatArray] = []
        self._held = 0
        self._sorted: FloatArray | None = None

    def add(self, times: FloatArray) -> None:
        self.seen += int(times.size)
        if self.bound < math.inf:
            times = times[times < self.bound]
        if times.size == 0:
            return
        self._chunks.append(times)
        self._held += int(times.size)
        self._sorted = None
        if self._held > self.cap + self.cap // 2:
            self._compact()

    def _compact(self) -> FloatArray:
        times = np.concatenate(self._chunks) if self._chunks else np.empty(0)
        if times.size > self.cap:
            times = np.partition(times, self.cap - 1)[: self.cap]
            self.bound = float(times.max())
        self._chunks = [times]
        self._held = int(times.size)
        return times

    @property
    def held(self) -> int:
        return self._held

    def before(self, t: float) -> int | None:
        if t > self.bound:
            return None
        if self._sorted is None:
            # The sorted copy replaces the chunks, so the times are held once.
            self._sorted = np.sort(self._compact())
            self._chunks = [self._sorted]
            if t > self.bound:
                return None
        return int(np.searchsorted(self._sorted, t, side="left"))


class EventTimes:
    """What scoring needs from the replayed prediction events, in bounded memory.

    For each incident it keeps the event times of its model's events with
    ``start <= ts < end`` (all of them from ``start`` on without an
    ``end``), at most ``cap`` per incident: past the cap it keeps the
    smallest ``cap`` and counts the rest, so a delay in events beyond them
    is unknown (``None``) and the incident is flagged ``over_cap``. Until
    it is asked for a count it may hold up to one and a half ``cap`` times
    plus one batch, so that batches arriving out of order do not sort
    ``cap`` times each. Per model it tracks the first and last event time
    and the number of events.

    ``add`` is vectorised: per batch its work is a few numpy passes per
    incident of the batch's model, none per event.

    >>> times = EventTimes([Incident("m", 100.0, 200.0, None, None)])
    >>> times.add("m", np.array([150.0, 90.0, 120.0]))
    >>> times.add("m", np.array([110.0, 250.0]))
    >>> times.events_before(0, 150.0), times.in_range(0), times.span_seconds()
    (2, 3, 160.0)
    """

    def __init__(self, incidents: Sequence[Incident], cap: int = 10_000_000) -> None:
        if cap < 1:
            msg = f"cap must be at least 1, got {cap}"
            raise ValueError(msg)
        self.cap = cap
        self._incidents = tuple(incidents)
        self._kept = [_Kept(cap) for _ in self._incidents]
        self._of_model: dict[str, list[int]] = {}
        for index, incident in enumerate(self._incidents):
            self._of_model.setdefault(incident.model_id, []).append(index)
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def add(self, model_id: str, ts: npt.ArrayLike) -> None:
        """Record one micro-batch's event times of ``model_id``'s prediction events."""
        times = np.asarray(ts, dtype=np.float64).ravel()
        if times.size == 0:
            return
        low, high = float(times.min()), float(times.max())
        self._first[model_id] = min(low, self._first.get(model_id, low))
        self._last[model_id] = max(high, self._last.get(model_id, high))
        self._count[model_id] = self._count.get(model_id, 0) + int(times.size)
        for index in self._of_model.get(model_id, ()):
            incident = self._incidents[index]
            inside = times >= incident.start
            if incident.end is not None:
                inside &= times < incident.end
            self._kept[index].add(times[inside])

    @property
    def incidents(self) -> tuple[Incident, ...]:
        """The incidents, in the order their indices refer to."""
        return self._incidents

    def events_before(self, incident_index: int, t: float) -> int | None:
        """Events in the incident's range with an event time before ``t``; None past the cap."""
        return self._kept[incident_index].before(t)

    def in_range(self, incident_index: int) -> int:
        """How many events fell in the incident's range, kept or only counted."""
        return self._kept[incident_index].seen

    def held(self, incident_index: int) -> int:
        """How many of the incident's event times are in memory (see the class doc)."""
        return self._kept[incident_index].held

    def over_cap(self, incident_index: int) -> bool:
        """Whether the incident's range held more events than the cap."""
        kept = self._kept[incident_index]
        return kept.seen > kept.cap

    def events(self, model_id: str) -> int:
        """How many events of ``model_id`` were recorded."""
        return self._count.get(model_id, 0)

    def span(self, model_id: str) -> tuple[float, float] | None:
        """The first and last event time of ``model_id``, or None without events."""
        if model_id not in self._first:
            return None
        return self._first[model_id], self._last[model_id]

    def span_seconds(self) -> float:
        """Last minus first event time, summed over the models with events."""
        return sum(self._last[model] - self._first[model] for model in self._first)


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Alarm:
    kind: str
    model_id: str
    feature: str
    detector: str
    statistic: str
    event_time: float | None
    alert_id: str | None


@dataclass(frozen=True)
class FirstAlarm:
    """The first alarm that detected an incident, with its delays."""

    kind: str
    feature: str
    detector: str
    statistic: str
    event_time: float
    alert_id: str | None
    delay_seconds: float
    delay_events: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "feature": self.feature,
            "detector": self.detector,
            "statistic": self.statistic,
            "event_time": self.event_time,
            "alert_id": self.alert_id,
        }


@dataclass(frozen=True)
class IncidentResult:
    """How one incident fared: its first alarm overall and per ``detector|statistic``."""

    incident: Incident
    first: FirstAlarm | None
    by_detector: Mapping[str, FirstAlarm]
    events: int
    events_over_cap: bool

    @property
    def detected(self) -> bool:
        return self.first is not None

    def to_dict(self) -> dict[str, Any]:
        incident, first = self.incident, self.first
        return {
            "model_id": incident.model_id,
            "start": incident.start,
            "end": incident.end,
            "features": None if incident.features is None else list(incident.features),
            "note": incident.note,
            "detected": first is not None,
            "delay_seconds": None if first is None else first.delay_seconds,
            "delay_events": None if first is None else first.delay_events,
            "events": self.events,
            "events_over_cap": self.events_over_cap,
            "first_alert": None if first is None else first.to_dict(),
            "by_detector": {
                key: {"delay_seconds": hit.delay_seconds, "delay_events": hit.delay_events}
                for key, hit in sorted(self.by_detector.items())
            },
        }


@dataclass(frozen=True)
class Scorecard:
    """One family of alarms (drift family or performance) scored against the incidents."""

    incidents: int
    detected: int
    missed: int
    delay_seconds_median: float | None
    delay_seconds_p90: float | None
    delay_events_median: float | None
    delay_events_p90: float | None
    false_alarms: int
    false_alarms_per_day: float
    per_incident: tuple[IncidentResult, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "missed": self.missed,
            "delay_seconds_median": self.delay_seconds_median,
            "delay_seconds_p90": self.delay_seconds_p90,
            "delay_events_median": self.delay_events_median,
            "delay_events_p90": self.delay_events_p90,
            "false_alarms": self.false_alarms,
            "false_alarms_per_day": self.false_alarms_per_day,
            "per_incident": [result.to_dict() for result in self.per_incident],
        }


@dataclass(frozen=True)
class Score:
    """Drift-family and performance scorecards; ``to_dict`` nests the latter."""

    drift: Scorecard
    performance: Scorecard

    def to_dict(self) -> dict[str, Any]:
        return {**self.drift.to_dict(), "performance": self.performance.to_dict()}


def score(
    alerts: Sequence[Mapping[str, Any]], incidents: Sequence[Incident], times: EventTimes
) -> Score:
    """Score alerts (as published) against the incidents, by the rules in the module doc.

    ``times`` must have been built from the same incidents, in the same order.
    """
    if tuple(incidents) != times.incidents:
        msg = "the event times were recorded for other incidents than the ones scored"
        raise ValueError(msg)
    alarms = _alarms(alerts)
    days = max(times.span_seconds(), MIN_SPAN_SECONDS) / SECONDS_PER_DAY
    drift = [alarm for alarm in alarms if alarm.kind in DRIFT_KINDS]
    performance = [alarm for alarm in alarms if alarm.kind in PERFORMANCE_KINDS]
    return Score(
        drift=_scorecard(drift, incidents, times, days, by_feature=True),
        performance=_scorecard(performance, incidents, times, days, by_feature=False),
    )


def _alarms(alerts: Sequence[Mapping[str, Any]]) -> list[_Alarm]:
    """The alarms, each alert id once, earliest event time first (stable; no time last)."""
    alarms: list[_Alarm] = []
    ids: set[str] = set()
    for n, alert in enumerate(alerts):
        alarm = _alarm(alert, n)
        if alarm.kind == RESOLVED:
            continue
        if alarm.alert_id is not None:
            if alarm.alert_id in ids:
                continue
            ids.add(alarm.alert_id)
        alarms.append(alarm)
    alarms.sort(key=lambda alarm: math.inf if alarm.event_time is None else alarm.event_time)
    return alarms


def _alarm(alert: Mapping[str, Any], n: int) -> _Alarm:
    missing = [key for key in ALERT_KEYS if key not in alert]
    if missing:
        msg = f"alert at index {n}: missing {', '.join(missing)}"
        raise ValueError(msg)
    kind = alert["kind"]
    if kind != RESOLVED and kind not in DRIFT_KINDS | PERFORMANCE_KINDS:
        msg = f"alert at index {n}: unknown kind {kind!r}"
        raise ValueError(msg)
    event_time = alert["event_time"]
    return _Alarm(
        kind=kind,
        model_id=alert["model_id"],
        feature=alert["feature"],
        detector=alert["detector"],
        statistic=alert["statistic"],
        event_time=None if event_time is None else float(event_time),
        alert_id=alert["alert_id"],
    )


def _scorecard(
    alarms: Sequence[_Alarm],
    incidents: Sequence[Incident],
    times: EventTimes,
    days: float,
    *,
    by_feature: bool,
) -> Scorecard:
    of_model: dict[str, list[int]] = {}
    for index, incident in enumerate(incidents):
        of_model.setdefault(incident.model_id, []).append(index)
    firsts: list[dict[str, _Alarm]] = [{} for _ in incidents]
    first: list[_Alarm | None] = [None] * len(incidents)
    false_alarms = 0
    # Alarms come earliest first, so the first to reach an incident is its first.
    for alarm in alarms:
        hits = [
            index
            for index in of_model.get(alarm.model_id, ())
            if _detects(alarm, incidents[index], by_feature=by_feature)
        ]
        if not hits:
            false_alarms += 1
        for index in hits:
            if first[index] is None:
                first[index] = alarm
            firsts[index].setdefault(f"{alarm.detector}|{alarm.statistic}", alarm)
    results = tuple(
        _result(index, incident, first[index], firsts[index], times)
        for index, incident in enumerate(incidents)
    )
    return _summary(results, false_alarms, days)


def _result(
    index: int,
    incident: Incident,
    first: _Alarm | None,
    firsts: Mapping[str, _Alarm],
    times: EventTimes,
) -> IncidentResult:
    return IncidentResult(
        incident=incident,
        first=None if first is None else _hit(first, index, incident, times),
        by_detector={key: _hit(alarm, index, incident, times) for key, alarm in firsts.items()},
        events=times.in_range(index),
        events_over_cap=times.over_cap(index),
    )


def _detects(alarm: _Alarm, incident: Incident, *, by_feature: bool) -> bool:
    if alarm.event_time is None or not incident.covers(alarm.event_time):
        return False
    if by_feature and incident.features is not None:
        return alarm.feature in incident.features
    return True


def _hit(alarm: _Alarm, index: int, incident: Incident, times: EventTimes) -> FirstAlarm:
    # Only detecting alarms get here, and an alarm without an event time detects nothing.
    event_time = incident.start if alarm.event_time is None else alarm.event_time
    return FirstAlarm(
        kind=alarm.kind,
        feature=alarm.feature,
        detector=alarm.detector,
        statistic=alarm.statistic,
        event_time=event_time,
        alert_id=alarm.alert_id,
        delay_seconds=event_time - incident.start,
        delay_events=times.events_before(index, event_time),
    )


def _summary(results: tuple[IncidentResult, ...], false_alarms: int, days: float) -> Scorecard:
    firsts = [result.first for result in results if result.first is not None]
    seconds = [hit.delay_seconds for hit in firsts]
    events = [hit.delay_events for hit in firsts if hit.delay_events is not None]
    return Scorecard(
        incidents=len(results),
        detected=len(firsts),
        missed=len(results) - len(firsts),
        delay_seconds_median=_percentile(seconds, 50),
        delay_seconds_p90=_percentile(seconds, 90),
        delay_events_median=_percentile(events, 50),
        delay_events_p90=_percentile(events, 90),
        false_alarms=false_alarms,
        false_alarms_per_day=false_alarms / days,
        per_incident=results,
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ----------------------------------------------------------------------------- pareto


def pareto(points: Sequence[tuple[float | None, float]]) -> list[bool]:
    """Which settings are on the Pareto front of (median delay, false alarms per day).

    A setting is on the front when no other is at least as good on both and
    strictly better on one; lower is better on both. A ``None`` delay
    (nothing detected) is worse than any delay. Equal settings are all on
    the front.

    >>> pareto([(60.0, 2.0), (30.0, 5.0), (90.0, 2.0), (None, 0.0), (60.0, 2.0)])
    [True, True, False, True, True]
    """
    keys = [(math.inf if delay is None else float(delay), float(rate)) for delay, rate in points]
    return [not any(_dominates(other, point) for other in keys) for point in keys]


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a != b
