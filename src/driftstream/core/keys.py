"""Which monitors an event feeds: its model version and its segment values.

A model's monitors are keyed by (version, segment). With versions split,
each active version has its own; without, the version part is ``""`` and
one set of monitors sees every version. Each event feeds its version's
whole-traffic monitor and, for every configured segment key it carries, the
monitor of that key's value. A key is one event segment name (``country``)
or several joined by ``+`` (``country+device``, their pair of values).

Both dimensions are capped, so state and metric series stay bounded:

- **Versions.** At most ``max_versions`` are active. A version arriving when
  all slots are taken retires the least recently seen one (the smallest
  last event time; ties by name). With ``retire_after_seconds``, a version
  retires at the first event that moves the watermark (the largest event
  time so far) more than that past its own last event.
- **Segment values.** Each key's first ``max_values`` values, in event
  order, get their own monitors; later ones share ``__other__``.

Decisions are taken event by event, so they do not depend on how the stream
is cut into batches: a replay, or a restart that re-reads a batch, retires
and admits at the same events. ``KeyRegistry.plan`` does that with numpy,
looping in Python only at the rare events where a version is admitted or
retired.

>>> import numpy as np
>>> registry = KeyRegistry(KeySettings(versions=True, max_versions=1, segment_keys=("country",)))
>>> plan = registry.plan(
...     np.array([1.0, 2.0, 3.0]),
...     np.array(["v1", "v1", "v2"], dtype=object),
...     {"country": np.array(["US", None, "GB"], dtype=object)},
... )
>>> [(run.start, run.stop, run.retired) for run in plan.runs]
[(0, 2, []), (2, 3, ['v1'])]
>>> [(key.version, key.segment_key, key.segment_value, rows.tolist())
...  for key, rows in plan.runs[0].groups()]
[('v1', '', '', [0, 1]), ('v1', 'country', 'US', [0])]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.state import STATE_VERSION, StatePath, StateReader

OTHER = "__other__"
# Parts of a compound key's value are joined with the unit separator, which
# no sane segment value contains.
PART_SEPARATOR = "\x1f"
_STATE_KEYS = ("versions", "values", "watermark")

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class KeySettings:
    """How one model's traffic is split between monitors (see the module docstring)."""

    versions: bool = False
    max_versions: int = 4
    retire_after_seconds: float | None = None
    segment_keys: tuple[str, ...] = ()
    max_values: int = 50

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Every event segment name a key uses, each once."""
        names: dict[str, None] = {}
        for key in self.segment_keys:
            names.update(dict.fromkeys(key.split("+")))
        return tuple(names)

    @property
    def splits(self) -> bool:
        return self.versions or bool(self.segment_keys)


@dataclass(frozen=True)
class MonitorKey:
    """One monitor of a model: a version (``""``: all) and a segment (``""``: all traffic)."""

    version: str = ""
    segment_key: str = ""
    segment_value: str = ""

    @property
    def whole(self) -> bool:
        return not (self.version or self.segment_key)

    def segment(self) -> dict[str, str]:
        """The segment as alerts carry it: each event segment name with its value."""
        if not self.segment_key:
            return {}
        names = self.segment_key.split("+")
        if self.segment_value == OTHER:
            return dict.fromkeys(names, OTHER)
        return dict(zip(names, self.segment_value.split(PART_SEPARATOR), strict=False))

    def suffix(self) -> str:
        """What tells this monitor's state apart from the model's whole-traffic one."""
        if self.whole:
            return ""
        return "|" + json.dumps([self.version, self.segment_key, self.segment_value])


WHOLE = MonitorKey()


@dataclass
class Split:
    """One dimension of a run (the whole traffic, or one segment key): rows by monitor."""

    order: IntArray  # batch rows, grouped by monitor, each group in event order
    bounds: list[int]  # group i is order[bounds[i]:bounds[i + 1]]
    keys: list[MonitorKey]


@dataclass
class Run:
    """Rows ``[start, stop)``, over which the active versions do not change.

    ``retired`` versions retire just before the run's first row.
    """

    start: int
    stop: int
    retired: list[str]
    splits: list[Split] = field(default_factory=list)

    def groups(self) -> list[tuple[MonitorKey, IntArray]]:
        """Each monitor's rows in this run."""
        return [
            (key, split.order[split.bounds[i] : split.bounds[i + 1]])
            for split in self.splits
            for i, key in enumerate(split.keys)
        ]


@dataclass
class Plan:
    """A batch's runs, and how many rows each segment key sent to ``__other__``."""

    runs: list[Run]
    overflow: dict[str, int]


class KeyRegistry:
    """One model's active versions and admitted segment values, per partition unit."""

    def __init__(self, settings: KeySettings) -> None:
        self.settings = settings
        self.versions: dict[str, float] = {}  # active version -> its last event time
        self.values: dict[str, list[str]] = {key: [] for key in settings.segment_keys}
        self.watermark = -math.inf

    def plan(
        self,
        ts: npt.NDArray[np.float64],
        versions: np.ndarray,
        segments: Mapping[str, np.ndarray],
    ) -> Plan:
        """Assign a batch's rows to monitors, admitting and retiring as the events say."""
        n = len(ts)
        if self.settings.versions:
            names, codes = _factorise(versions)
            cuts = self._versions(ts, names, codes)
        else:
            names, codes, cuts = [""], np.zeros(n, dtype=np.intp), []
        if n:
            self.watermark = max(self.watermark, float(np.max(ts)))
        dimensions, overflow = self._segments(segments, n)
        runs = []
        starts = [0, *(row for row, _ in cuts)]
        retired = [[], *(gone for _, gone in cuts)]
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else n
            if stop > start or retired[i]:
                run = Run(start, stop, retired[i])
                run.splits = _splits(start, stop, names, codes, dimensions)
                runs.append(run)
        return Plan(runs, overflow)

    def _versions(
        self, ts: npt.NDArray[np.float64], names: list[str], codes: IntArray
    ) -> list[tuple[int, list[str]]]:
        """Admit and retire versions event by event; the rows where the set changed."""
        cuts: list[tuple[int, list[str]]] = []
        watermark = np.maximum.accumulate(np.maximum(ts, self.watermark)) if len(ts) else ts
        pos = 0
        while pos < len(ts):
            row, expired = self._next_change(ts, watermark, names, codes, pos)
            self._seen(ts, names, codes, pos, row)
            if row == len(ts):
                break
            gone = expired
            for name in expired:
                del self.versions[name]
            name = names[codes[row]]
            if name not in self.versions:
                # A loop, not an if: a lowered max_active shrinks the set here.
                while len(self.versions) >= self.settings.max_versions:
                    oldest = min(self.versions, key=lambda v: (self.versions[v], v))
                    del self.versions[oldest]
                    gone = [*gone, oldest]
                self.versions[name] = float(ts[row])
            if gone:
                cuts.append((row, gone))
            pos = row
        return cuts

    def _next_change(
        self,
        ts: npt.NDArray[np.float64],
        watermark: npt.NDArray[np.float64],
        names: list[str],
        codes: IntArray,
        pos: int,
    ) -> tuple[int, list[str]]:
        """The first row from ``pos`` that admits or retires a version, and who expires there."""
        code_of = {name: code for code, name in enumerate(names)}
        inactive = [code for code, name in enumerate(names) if name not in self.versions]
        row = len(ts)
        if inactive:
            hits = np.flatnonzero(np.isin(codes[pos:], inactive))
            row = pos + int(hits[0]) if hits.size else row
        after = self.settings.retire_after_seconds
        if after is None:
            return row, []
        expiry: dict[str, int] = {}
        for name, last in self.versions.items():
            mine = codes[pos:] == code_of.get(name, -1)
            seen = np.maximum.accumulate(np.where(mine, ts[pos:], -np.inf))
            before = np.maximum(last, np.concatenate(([-np.inf], seen[:-1])))
            hits = np.flatnonzero((watermark[pos:] > before + after) & ~mine)
            if hits.size:
                expiry[name] = pos + int(hits[0])
        if expiry:
            row = min(row, *expiry.values())
        return row, sorted(name for name, at in expiry.items() if at == row)

    def _seen(
        self, ts: npt.NDArray[np.float64], names: list[str], codes: IntArray, start: int, stop: int
    ) -> None:
        if stop <= start:
            return
        part, times = codes[start:stop], ts[start:stop]
        for code in np.unique(part).tolist():
            name = names[code]
            if name in self.versions:
                latest = float(np.max(times[part == code]))
                self.versions[name] = max(self.versions[name], latest)

    def _segments(
        self, segments: Mapping[str, np.ndarray], n: int
    ) -> tuple[list[tuple[str, IntArray, list[str]]], dict[str, int]]:
        """Per segment key: each row's value code (-1: none) and the codes' values."""
        dimensions = []
        overflow: dict[str, int] = {}
        for key in self.settings.segment_keys:
            column = _key_column(key, segments, n)
            present = np.flatnonzero(column != None)  # noqa: E711  (elementwise)
            codes = np.full(n, -1, dtype=np.intp)
            admitted = self.values[key]
            if present.size:
                found, first, inverse = np.unique(
                    column[present], return_index=True, return_inverse=True
                )
                self._admit(admitted, found[np.argsort(first, kind="stable")].tolist())
                slot = {value: i for i, value in enumerate(admitted)}
                other = len(admitted)
                mapped = np.array([slot.get(v, other) for v in found.tolist()], dtype=np.intp)
                codes[present] = mapped[inverse.reshape(-1)]
                overflow[key] = int(np.count_nonzero(codes == other))
            dimensions.append((key, codes, [*admitted, OTHER]))
        return dimensions, overflow

    def _admit(self, admitted: list[str], new: Sequence[str]) -> None:
        known = set(admitted)
        for value in new:
            if len(admitted) >= self.settings.max_values:
                return
            if value not in known:
                admitted.append(value)
                known.add(value)

    def monitors_of(self, version: str) -> list[MonitorKey]:
        """Every monitor key a version can have: what retiring it deletes."""
        keys = [MonitorKey(version)]
        for key, values in self.values.items():
            keys += [MonitorKey(version, key, value) for value in (*values, OTHER)]
        return keys

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "monitor_keys",
            "version": STATE_VERSION,
            "versions": [[name, last] for name, last in self.versions.items()],
            "values": {key: list(values) for key, values in self.values.items()},
            "watermark": None if math.isinf(self.watermark) else self.watermark,
        }

    @classmethod
    def from_state(
        cls, settings: KeySettings, state: Mapping[str, Any], at: StatePath | None = None
    ) -> KeyRegistry:
        """Rebuild from ``to_state()``; ValueError names the key at fault.

        Settings win over the saved state: a segment key no longer configured
        is dropped, a new one starts empty, and caps apply from now on.
        """
        reader = StateReader(state, "monitor_keys", _STATE_KEYS, at or StatePath("keys"))
        registry = cls(settings)
        for i, pair in enumerate(reader.array("versions")):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                reader.fail("versions", f"entry {i} is not a [name, last event time] pair")
            registry.versions[pair[0]] = _finite(reader, "versions", pair[1])
        for key, values in reader.mapping("values").items():
            if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
                reader.fail("values", f"{key!r} does not hold a list of strings")
            if key in registry.values:
                registry.values[key] = list(values[: settings.max_values])
        watermark = reader.optional_number("watermark")
        registry.watermark = -math.inf if watermark is None else watermark
        return registry


def _finite(reader: StateReader, key: str, value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        reader.fail(key, f"holds {value!r} where an event time belongs")
    return float(value)


def _factorise(values: np.ndarray) -> tuple[list[str], IntArray]:
    """Distinct values and each row's code; codes number values in order of appearance."""
    if not len(values):
        return [], np.zeros(0, dtype=np.intp)
    first = values[0]
    if values[-1] == first and bool(np.all(values == first)):
        return [str(first)], np.zeros(len(values), dtype=np.intp)
    found, index, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(index, kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return [str(v) for v in found[order].tolist()], rank[inverse.reshape(-1)]


def _key_column(key: str, segments: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """A key's value per row (``None`` where the event lacks a part of it)."""
    parts = key.split("+")
    columns = [segments.get(part) for part in parts]
    if any(column is None for column in columns):
        return np.full(n, None, dtype=object)
    if len(parts) == 1:
        return columns[0]  # type: ignore[return-value]
    joined = [
        None if None in values else PART_SEPARATOR.join(values)
        for values in zip(*columns, strict=True)
    ]
    return np.array(joined, dtype=object)


def _splits(
    start: int,
    stop: int,
    names: list[str],
    codes: IntArray,
    dimensions: list[tuple[str, IntArray, list[str]]],
) -> list[Split]:
    """Rows ``[start, stop)`` grouped by monitor: the whole traffic, then each segment key."""
    version = codes[start:stop]
    splits = [_group(start, version, [MonitorKey(name) for name in names])]
    for key, values, labels in dimensions:
        value = values[start:stop]
        width = len(labels)
        combined = np.where(value >= 0, version * width + value, -1)
        keys = [MonitorKey(name, key, label) for name in names for label in labels]
        splits.append(_group(start, combined, keys))
    return splits


def _group(start: int, codes: IntArray, keys: list[MonitorKey]) -> Split:
    """Rows by code (``-1``: none), each group in event order; empty groups left out."""
    if len(codes) and codes[0] >= 0 and bool(np.all(codes == codes[0])):
        order = np.arange(start, start + len(codes), dtype=np.intp)
        return Split(order, [0, len(codes)], [keys[int(codes[0])]])
    kept = np.flatnonzero(codes >= 0)
    order = kept[np.argsort(codes[kept], kind="stable")]
    sorted_codes = codes[order]
    edges = np.flatnonzero(np.diff(sorted_codes)) + 1
    bounds = [0, *edges.tolist(), len(order)]
    chosen = [keys[int(sorted_codes[b])] for b in bounds[:-1]] if len(order) else []
    return Split(order + start, bounds if len(order) else [0], chosen)
