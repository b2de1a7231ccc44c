"""Checks of a unit's streams as a whole: silent models, old baselines, dead-letter share.

The monitors judge windows of one model's values; these judge what reaches
a partition unit at all, once per micro-batch, from what the decoder made
of it. Both keep their state in the unit's hash next to the monitors',
loaded before the batch changes anything and saved in the same commit.

- **Freshness** (``core/freshness.py``): :class:`Freshness` watches the
  unit's accepted prediction events, every model's, in offset order. One
  ``FreshnessWatch`` per distinct setting among the models (one in all
  with the defaults); each sees every event's time, so they share the
  unit's watermark, and their states are saved as one (``freshness``).
- **Dead-letter share** (``core/dead_letter_rate.py``): :func:`streams`
  splits the batch per model and role (one topic-partition each, so one
  order of offsets that batch cuts cannot change); :func:`judge` feeds one
  ``DeadLetterRate`` per stream (``dead_letters:<role>:<model>``) with its
  accepted events and dead letters in offset order. Dead letters without a
  model (``unknown_model``, unreadable records) are counted in the metrics
  only, and so are ``labels_disabled`` ones: a model without a labels
  section refusing labels is a choice of its config, not a producer bug.

A finding cites one record of the batch (:class:`Cited`), as the unit read
it: the worker turns it into the alert's source.

Nothing here reads Redis, Kafka or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.contract import LABELS_DISABLED
from driftstream.core.dead_letter_rate import DeadLetterRate
from driftstream.core.findings import Finding
from driftstream.core.freshness import FreshnessSettings, FreshnessWatch
from driftstream.core.state import STATE_VERSION
from driftstream.runtime.decode import DeadLetter, Decoded, ModelBatch
from driftstream.runtime.models import PREDICTIONS, ModelSpec, dead_letters_state_name


@dataclass(frozen=True)
class Cited:
    """A finding and the record it cites, as the unit read it (repartition: its offset there)."""

    finding: Finding
    role: str
    topic: str
    partition: int
    offset: int


class Freshness:
    """The unit's freshness watches, one per distinct setting among the models it serves.

    A model is watched when its ``ModelSpec.freshness`` is set; its
    baseline's ``created_at`` dates it (None skips its age check).
    """

    def __init__(
        self, models: Mapping[str, ModelSpec], state: Mapping[str, Any] | None = None
    ) -> None:
        groups: dict[FreshnessSettings, list[str]] = {}
        for model_id, spec in sorted(models.items()):
            if spec.freshness is not None:
                groups.setdefault(spec.freshness, []).append(model_id)
        self.created = {
            model_id: models[model_id].baseline.created_at
            for members in groups.values()
            for model_id in members
        }
        saved = None
        if state is not None:
            # One strict read of the whole, then each watch gets its models' part.
            saved = FreshnessWatch.from_state(FreshnessSettings(), state).to_state()
        self.watches: list[tuple[FreshnessWatch, dict[str, float | None]]] = []
        for settings, members in groups.items():
            watch = FreshnessWatch(settings)
            if saved is not None:
                part = {m: v for m, v in saved["models"].items() if m in members}
                watch = FreshnessWatch.from_state(settings, {**saved, "models": part})
            self.watches.append((watch, {m: self.created[m] for m in members}))

    @property
    def watching(self) -> bool:
        return bool(self.watches)

    def observe(self, batches: Sequence[ModelBatch]) -> list[Cited]:
        """Count the accepted prediction events of one batch; the findings, by model."""
        fed = [b for b in batches if b.role == PREDICTIONS and len(b.offsets)]
        if not fed or not self.watches:
            return []
        offsets = np.concatenate([b.offsets for b in fed])
        order = np.argsort(offsets, kind="stable")
        ts = np.concatenate([b.batch.ts for b in fed])[order]
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        starts = np.cumsum([0, *(len(b.offsets) for b in fed)])
        parts: dict[str, list[npt.NDArray[np.intp]]] = {}
        for i, batch in enumerate(fed):
            parts.setdefault(batch.model_id, []).append(rank[starts[i] : starts[i + 1]])
        rows = {model_id: np.concatenate(found) for model_id, found in parts.items()}
        findings: list[Finding] = []
        for watch, created in self.watches:
            own = {model_id: rows[model_id] for model_id in created if model_id in rows}
            findings += watch.observe(ts, own, created)
        findings.sort(key=lambda f: f.model_id)
        return [_cite(f, fed, starts, int(order[f.row])) for f in findings]

    def to_state(self) -> dict[str, Any]:
        """One ``FreshnessWatch`` state holding every watched model."""
        watermarks = [w.watermark for w, _ in self.watches if w.watermark is not None]
        models: dict[str, Any] = {}
        for watch, _ in self.watches:
            models.update(watch.to_state()["models"])
        return {
            "kind": "freshness",
            "version": STATE_VERSION,
            "watermark": max(watermarks) if watermarks else None,
            "models": dict(sorted(models.items())),
        }

    def lags(self) -> dict[str, tuple[float, float | None]]:
        """Per watched model: seconds its latest event is behind the watermark, its baseline's age.

        Event time, in seconds; the age is None without a creation time.
        """
        found = {}
        for watch, created in self.watches:
            mark = watch.watermark
            for model_id, born in created.items():
                latest = watch.latest(model_id)
                if mark is not None and latest is not None:
                    found[model_id] = (mark - latest, None if born is None else mark - born)
        return found


@dataclass
class Stream:
    """One model's events of one role in a batch: accepted (by batch) and refused."""

    model_id: str
    role: str
    batches: list[ModelBatch] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


def streams(
    decoded: Decoded, roles: Mapping[str, str], models: Mapping[str, ModelSpec]
) -> dict[str, Stream]:
    """The batch's streams whose dead-letter share is judged, by state name.

    ``decoded`` is the decoder's output before dead letters are mapped back
    to their source records, so each stream's offsets are those of the one
    log the unit read it from.
    """
    found: dict[str, Stream] = {}
    for batch in decoded.batches:
        if models[batch.model_id].dead_letters is not None:
            name = dead_letters_state_name(batch.role, batch.model_id)
            found.setdefault(name, Stream(batch.model_id, batch.role)).batches.append(batch)
    for letter in decoded.dead:
        spec = models.get(letter.model_id)
        role = roles.get(letter.record.topic)
        if spec is None or spec.dead_letters is None or role is None:
            continue
        if letter.reason == LABELS_DISABLED:
            continue
        name = dead_letters_state_name(role, letter.model_id)
        found.setdefault(name, Stream(letter.model_id, role)).letters.append(letter)
    return found


def judge(stream: Stream, rate: DeadLetterRate) -> list[Cited]:
    """Feed one stream to its tracker; each finding cites the event that closed its window."""
    accepted = [b.offsets for b in stream.batches]
    dead = np.fromiter((d.record.offset for d in stream.letters), np.int64, len(stream.letters))
    offsets = np.concatenate([*accepted, dead])
    order = np.argsort(offsets, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    starts = np.cumsum([0, *map(len, accepted)])
    kept = int(starts[-1])
    positions = rank[kept:].tolist()
    found = rate.update(
        stream.model_id,
        kept,
        [(d.reason, p) for d, p in zip(stream.letters, positions, strict=True)],
    )
    cited = []
    for finding in found:
        index = int(order[finding.row])
        if index < kept:
            cited.append(_cite(finding, stream.batches, starts, index))
        else:
            record = stream.letters[index - kept].record
            cited.append(Cited(finding, stream.role, record.topic, record.partition, record.offset))
    return cited


def _cite(
    finding: Finding, batches: Sequence[ModelBatch], starts: npt.NDArray[Any], index: int
) -> Cited:
    """The finding citing row ``index`` of ``batches`` joined; its event time filled in."""
    number = int(np.searchsorted(starts, index, side="right")) - 1
    batch, row = batches[number], index - int(starts[number])
    if math.isnan(finding.event_time):
        finding = replace(finding, event_time=float(batch.batch.ts[row]))
    return Cited(finding, batch.role, batch.topic, batch.partition, int(batch.offsets[row]))
