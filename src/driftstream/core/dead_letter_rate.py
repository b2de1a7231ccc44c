"""Dead-letter share per model and reason, over tumbling windows of events.

Every refused event goes to the dead-letter topic and a labelled counter, so
a trickle is visible in the metrics anyway. What deserves an alert is a
producer bug: a release that writes a wrong type, drops a field or stamps
times in milliseconds sends a large share of a model's events to the
dead-letter topic at once.

Each model's events (accepted and dead, in the order the caller reads them)
fill tumbling windows of ``window`` events. When a window closes, each
reason's share of it is judged. It fails when it reaches

    ``max(max_share, critical_share(window, floor_rate, false_alarm))``

the second term from :func:`driftstream.core.quality.critical_share`: the
share a binomial at ``floor_rate`` (the most a healthy producer is assumed
to refuse for one reason) reaches with probability at most ``false_alarm``
(the Chernoff bound). At the default window of 5,000 events ``max_share``
decides; in small windows the bound does, so a few dead letters in a
window of 100 page nobody. A failed window opens a ``dead_letter_rate``
episode per (model, reason) through :class:`WindowEpisodes`, which resolves
after ``episodes.resolve_windows`` windows in a row below
``threshold * episodes.resolve_ratio``.

Windows count events, never batches or time, so the findings are the same
however the stream is cut into calls of :meth:`DeadLetterRate.update`.

>>> reasons = ("missing_field", "wrong_type", "bad_timestamp")
>>> rate = DeadLetterRate(DeadLetterSettings(reasons=reasons, window=1000))
>>> round(rate.settings.threshold, 4)
0.0132
>>> found = rate.update("fraud", 980, [("wrong_type", position) for position in range(20)])
>>> [(f.kind, f.feature, f.value, f.row, f.details["count"]) for f in found]
[('quality', 'wrong_type', 0.02, 999, 20)]
>>> [(f.kind, f.row) for f in rate.update("fraud", 2500, [])]
[('resolved', 1999)]

The first 1,000 events held 20 wrong types (2%); the next two windows held
none, so the episode resolved at the event that closed the second of them
(position 1999 of the 2,500 events of that call).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftstream.core.episodes import WindowEpisodes
from driftstream.core.findings import BASELINE, DRIFT, RESOLVED, Finding
from driftstream.core.quality import QUALITY, critical_share
from driftstream.core.settings import EpisodeSettings
from driftstream.core.state import MAX_COUNT, STATE_VERSION, StatePath, StateReader

DEAD_LETTER_RATE = "dead_letter_rate"
"""The ``statistic`` of dead-letter findings; their ``feature`` is the reason."""

_MODEL_KEYS = ("filled", "counts", "episodes")


@dataclass(frozen=True, kw_only=True)
class DeadLetterSettings:
    """Limits of the dead-letter check, per model and reason.

    ``reasons`` are the dead-letter reasons there are: ``contract.REASONS``,
    passed in by the runtime because the core imports nothing outside it.
    They bound the state, and findings come out in their order.
    """

    reasons: tuple[str, ...]

    # A trickle below 1% of a model's events is normal life (a client on an
    # old SDK, a hand-written test event) and the metrics count it anyway;
    # 1 event in 100 refused for one reason is a producer that broke.
    max_share: float = 0.01
    # 5,000 events: the drift windows' default size, large enough that the
    # 1% limit, not sampling noise, decides (see the module docstring).
    window: int = 5000
    # Per window, model and reason, as for the quality checks. It decides
    # only below about 1,700 events a window: at 5,000 a reason at the floor
    # rate reaches the 1% limit with probability about 1e-19, at 0.5% 7e-6.
    false_alarm: float = 1e-6
    # The share of one reason a healthy producer is assumed to stay under.
    # The binomial test holds false_alarm at any share up to it, so a small
    # window does not page on a handful of dead letters at this rate.
    floor_rate: float = 0.002
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)

    def __post_init__(self) -> None:
        reasons = self.reasons
        valid = isinstance(reasons, tuple) and all(isinstance(r, str) and r for r in reasons)
        if not valid or not reasons or len(set(reasons)) != len(reasons):
            msg = f"reasons must be a non-empty tuple of distinct names, got {reasons!r}"
            raise ValueError(msg)
        for name, value in (
            ("quality.max_dead_letter_share", self.max_share),
            ("quality.dead_letter_false_alarm", self.false_alarm),
            ("quality.dead_letter_floor_rate", self.floor_rate),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                msg = f"{name} must be a number in (0, 1), got {value!r}"
                raise ValueError(msg)
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_COUNT:
            msg = f"quality.dead_letter_window must be an int >= 1, got {window!r}"
            raise ValueError(msg)
        if self.threshold > 1.0:
            msg = (
                f"quality.dead_letter_window of {window} events is too small: no share of one "
                f"reason could fail at false_alarm {self.false_alarm!r}"
            )
            raise ValueError(msg)

    @property
    def threshold(self) -> float:
        """The share at which one reason fails a window."""
        return max(self.max_share, critical_share(self.window, self.floor_rate, self.false_alarm))


@dataclass
class _Model:
    """One model's open window (events in it, dead letters per reason) and episodes."""

    filled: int
    counts: dict[str, int]
    episodes: WindowEpisodes


class DeadLetterRate:
    """Dead-letter share episodes per model and reason.

    The state holds one small entry per model id ever passed in (its open
    window's counts, at most one per reason, and its open episodes), so
    callers pass only the ids of models they serve: the ids in
    ``unknown_model`` dead letters are anyone's guess and belong under one
    shared id, or none.
    """

    def __init__(self, settings: DeadLetterSettings) -> None:
        self.settings = settings
        self._models: dict[str, _Model] = {}

    def update(
        self, model_id: str, accepted: int, dead: Sequence[tuple[str, int]]
    ) -> list[Finding]:
        """Count one call's events of one model; the episodes they open or close.

        The call covers ``accepted + len(dead)`` events in the order the
        caller reads them (say the model's records of one batch, by offset).
        Each dead letter gives its reason (one of ``settings.reasons``) and
        its position in that order; the other positions are the accepted
        events. A finding's ``row`` is the position of the event that closed
        the judged window; the caller maps it to that event's record.
        ``event_time`` and the window's times are NaN, since a dead letter
        may have no usable time: the caller may fill in the time it knows.
        """
        size = _size(model_id, accepted, dead, self.settings.reasons)
        window = self.settings.window
        model = self._models.get(model_id)
        if model is None:
            model = self._models[model_id] = _Model(0, {}, WindowEpisodes(self.settings.episodes))
        start = model.filled
        buckets: dict[int, dict[str, int]] = {0: model.counts}
        for reason, position in dead:
            bucket = buckets.setdefault((start + int(position)) // window, {})
            bucket[reason] = bucket.get(reason, 0) + 1
        closes = (start + size) // window
        findings = []
        for index in range(closes):
            row = (index + 1) * window - start - 1
            findings += self._judge(model_id, model.episodes, buckets.get(index, {}), row)
        model.counts = buckets.get(closes, {})
        model.filled = (start + size) % window
        return findings

    def _judge(
        self, model_id: str, episodes: WindowEpisodes, counts: Mapping[str, int], row: int
    ) -> list[Finding]:
        """One closed window: each reason with dead letters in it or an open episode."""
        findings = []
        threshold = self.settings.threshold
        for reason in self.settings.reasons:
            count = counts.get(reason, 0)
            if not count and not episodes.is_open(reason):
                continue  # zero share, nothing to open or to calm
            share = count / self.settings.window
            change = episodes.observe(reason, share, threshold, True)
            if change is not None:
                findings.append(self._finding(change, model_id, reason, share, count, row))
        return findings

    def _finding(
        self, change: str, model_id: str, reason: str, share: float, count: int, row: int
    ) -> Finding:
        opened = change == DRIFT
        return Finding(
            kind=QUALITY if opened else RESOLVED,
            model_id=model_id,
            model_version="",
            feature=reason,
            detector=QUALITY,
            statistic=DEAD_LETTER_RATE,
            value=share,
            threshold=self.settings.threshold,
            severity="warning" if opened else "info",
            reference=BASELINE,
            window_start=math.nan,
            window_end=math.nan,
            window_count=self.settings.window,
            event_time=math.nan,
            row=row,
            details={"reason": reason, "count": count},
        )

    def to_state(self) -> dict[str, Any]:
        reasons = self.settings.reasons
        return {
            "kind": DEAD_LETTER_RATE,
            "version": STATE_VERSION,
            "window": self.settings.window,
            "models": {
                name: {
                    "filled": model.filled,
                    "counts": {r: model.counts[r] for r in reasons if r in model.counts},
                    "episodes": model.episodes.to_state(),
                }
                for name, model in sorted(self._models.items())
            },
        }

    @classmethod
    def from_state(
        cls, settings: DeadLetterSettings, state: Mapping[str, Any], at: StatePath | None = None
    ) -> DeadLetterRate:
        """Rebuild a tracker saved by :meth:`to_state`; ValueError names the key at fault.

        Saved under another window size, each model's open window starts
        over (its episodes are kept): its count no longer fits the new size.
        """
        reader = StateReader(state, DEAD_LETTER_RATE, ["window", "models"], at)
        saved_window = reader.count("window", minimum=1)
        rate = cls(settings)
        for name, value in reader.mapping("models").items():
            item = StateReader(value, None, _MODEL_KEYS, reader.child("models") / name)
            model = _read_model(item, settings, saved_window)
            if saved_window != settings.window:
                model.filled, model.counts = 0, {}
            rate._models[name] = model
        return rate


def _read_model(item: StateReader, settings: DeadLetterSettings, window: int) -> _Model:
    filled = item.count("filled")
    if filled >= window:
        item.fail("filled", f"must be below the window of {window}, got {filled}")
    counts = item.count_map("counts")
    for reason, count in counts.items():
        if reason not in settings.reasons:
            item.child("counts").fail(reason, "is not a dead-letter reason")
        if count == 0:
            item.child("counts").fail(reason, f"must be an int >= 1, got {count}")
    if sum(counts.values()) > filled:
        item.fail("counts", f"must add up to at most filled ({filled})")
    at = item.child("episodes")
    tracker = WindowEpisodes.from_state(settings.episodes, item.raw("episodes"), at)
    for reason in item.raw("episodes")["open"]:
        if reason not in settings.reasons:
            item.child("episodes").fail(f"open.{reason}", "is not a dead-letter reason")
    return _Model(filled, counts, tracker)


def _size(
    model_id: str, accepted: int, dead: Sequence[tuple[str, int]], reasons: tuple[str, ...]
) -> int:
    """The number of events one call covers, after checking its arguments."""
    if not isinstance(model_id, str) or not model_id:
        msg = f"model_id must be a non-empty string, got {model_id!r}"
        raise ValueError(msg)
    if not _is_int(accepted) or accepted < 0:
        msg = f"accepted must be an int >= 0, got {accepted!r}"
        raise ValueError(msg)
    size = int(accepted) + len(dead)
    positions = set()
    for reason, position in dead:
        if reason not in reasons:
            msg = f"dead-letter reason {reason!r} is not one of the known reasons"
            raise ValueError(msg)
        if not _is_int(position) or not 0 <= position < size:
            msg = f"dead-letter position must be an int in [0, {size}), got {position!r}"
            raise ValueError(msg)
        positions.add(int(position))
    if len(positions) != len(dead):
        msg = "two dead letters cannot share a position"
        raise ValueError(msg)
    return size


def _is_int(value: object) -> bool:
    """An int, numpy's included, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
