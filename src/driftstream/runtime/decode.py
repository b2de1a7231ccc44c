"""Consumed Kafka records to per-model columnar batches, plus dead letters.

``Decoder.decode`` takes one consumed micro-batch and never raises on input:
every record ends up either as a row of exactly one ``ModelBatch`` or as
exactly one ``DeadLetter`` with a stable ``reason`` (see ``REASONS``).

How it stays fast (``bench/bench_decode.py`` measures it against a bare
``orjson.loads`` loop):

- **Chunks.** Records are handled 500 at a time (``CHUNK``): each chunk is
  parsed, checked and turned into numpy arrays before the next is parsed,
  so the parsed objects die while still in cache. Chunks of 1,000 or more
  measured 15-25% slower.
- **Whole-chunk checks first.** Topics, sizes, parsing (one ``orjson.loads``
  call per chunk), model ids and keys are checked with ``map`` over the
  chunk. Only a chunk where one of them fails is walked record by record,
  to find and name the bad records.
- **Groups by column layout, not by model.** Within a chunk, records are
  grouped by (topic, partition, layout): models whose ``ModelColumns`` are
  equal share one group, and each row keeps its model's code. So 100 models
  cost about what one does, instead of 100 groups of a few rows each per
  chunk. ``finish`` orders a group's rows by (model, offset) with one sort,
  takes every column once in that order and slices it into one
  ``ModelBatch`` per model.
- **Columns, not events.** Producers write every event with the same keys in
  the same order, so one flat list of a chunk's values, sliced with a
  stride, yields each field without a lookup per event (events with other
  layouts fall back to ``dict.get``). The set of Python types in a column
  says whether all of it is clean; then one numpy conversion builds it. Only
  a column holding a wrong type is walked row by row, to name the bad rows,
  which are masked out of every column at the end.

Decisions the contract leaves open:

- A required field (``event_id``, ``model_id``, ``model_version``, ``ts``,
  ``features``, ``prediction``) that is absent or null is ``missing_field``.
- ``score`` and ``segment`` may be absent or null; either means "none".
- ``model_version`` and the values of the model's ``segment_keys`` are at
  most ``MAX_LABEL_BYTES`` UTF-8 bytes (``too_long`` otherwise): they key
  monitor state and label metric series. Values of other segment keys are
  not limited.
- Unknown top-level fields and unknown feature names are ignored: the
  baseline defines what is watched. Configured features an event lacks are
  missing values (NaN / ``None``). Feature names the model's baseline does
  not have are counted per model (``Decoded.unknown_features``, at most
  ``max_features`` distinct names kept): a chunk whose events share one key
  layout (the usual case, checked anyway) costs one look at that layout;
  other chunks, one set difference per event, and only when the chunk holds
  an unknown name at all.
- A prediction or score the baseline does not profile is still validated,
  but no column is built for it. Feature events carry no prediction or score
  columns; ``prediction`` and ``score`` fields on one are ignored.
- ``ts`` must fall between 1970-01-01 and 9999-12-31 (epoch seconds, or an
  RFC 3339 string with an offset); epoch milliseconds are refused, not
  guessed at.
- orjson refuses ``NaN``, ``Infinity`` and numbers that overflow a double
  (``1e400``) as syntax errors, so every float that reaches a column is
  finite. A second, slow parse with the standard library, run only for
  records orjson rejected, tells those apart from other bad JSON.

>>> decoder = Decoder({"m": ModelColumns(("x",), ("c",), "numeric", True)},
...                   {"preds": "predictions"})
>>> good = b'{"event_id": "1", "model_id": "m", "model_version": "v1", "ts": 5,'
>>> good += b' "features": {"x": 1.5, "c": true}, "prediction": 0.2}'
>>> out = decoder.decode([Record("preds", 0, 7, b"m", good),
...                       Record("preds", 0, 8, b"m", b"{oops")])
>>> batch = out.batches[0].batch
>>> batch.ts.tolist(), batch.columns["c"].tolist(), batch.columns["__score__"].tolist()
([5.0], ['true'], [nan])
>>> [(letter.record.offset, letter.reason) for letter in out.dead]
[(8, 'malformed_json')]
"""

from __future__ import annotations

import gc
import json
import math
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

# The reasons and roles live in the contract; they are re-exported from here.
from driftstream.contract import (  # noqa: F401
    BAD_TIMESTAMP,
    EMPTY,
    FEATURES,
    KEY_MISMATCH,
    LABELS,
    LABELS_DISABLED,
    MALFORMED_JSON,
    MAX_LABEL_BYTES,
    MAX_TS,
    MISSING_FIELD,
    NON_FINITE,
    NOT_AN_OBJECT,
    OVERSIZED,
    PREDICTIONS,
    REASONS,
    ROLES,
    TOO_LONG,
    TOO_MANY_FEATURES,
    UNKNOWN_MODEL,
    UNKNOWN_TOPIC,
    WRONG_TYPE,
    in_range,
    parse_timestamp,
    range_problem,
)
from driftstream.core.baseline import BaselineProfile, NumericProfile, category_label
from driftstream.core.batch import Batch
from driftstream.core.settings import CATEGORICAL, NUMERIC, PREDICTION, SCORE

# Records parsed and turned into columns at a time (see the module docstring).
CHUNK = 500

_ENVELOPE = ("event_id", "model_version", "ts", "features", "prediction", "score", "segment")
_TOPIC = attrgetter("topic")
_PARTITION = attrgetter("partition")
_KEY = attrgetter("key")
_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")
_MODEL_ID = itemgetter("model_id")
_UNPARSED = object()
_ASK = object()  # _fields: find the layout out

_NULL: type = type(None)
_STR: frozenset[type] = frozenset({str})
_DICT: frozenset[type] = frozenset({dict})
_NUMBER: frozenset[type] = frozenset({int, float})
_NUMBER_OR_NULL: frozenset[type] = frozenset({int, float, _NULL})
_NUMBER_OR_STR: frozenset[type] = frozenset({int, float, str})
_STR_OR_NULL: frozenset[type] = frozenset({str, _NULL})
_DICT_OR_NULL: frozenset[type] = frozenset({dict, _NULL})
_JSON_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    _NULL: "null",
}
_SHOWN = 80

# (topic, partition, layout code)
_Place = tuple[str, int, int]
_Fix = Callable[[int, Any], Any]


class Record(NamedTuple):
    """One consumed message, as plain data (no Kafka client types).

    A named tuple rather than a frozen dataclass: the worker builds one per
    consumed message, and this builds about three times faster.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # Only records of the repartition topic keep theirs: they name the source.
    headers: Sequence[tuple[str, bytes]] | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot be used; ``reason`` is one of ``REASONS``.

    ``model_id`` names the configured model the event belongs to, when that
    is known: for ``key_mismatch`` and for every reason found after the
    event named a configured model (a bad field, type, time or size). It is
    empty for ``unknown_model`` (the id is anyone's guess) and for records
    refused before their model could be read.
    """

    record: Record
    reason: str
    detail: str
    model_id: str = ""


@dataclass
class UnknownFeatures:
    """Feature values under names a model's baseline does not have.

    ``count`` counts each such value (an event with two unknown names counts
    twice); ``names`` keeps the first distinct names seen, up to a cap.
    """

    count: int = 0
    names: dict[str, None] = field(default_factory=dict)

    def add(self, names: Iterable[str], count: int, cap: int) -> None:
        self.count += count
        for name in names:
            if len(self.names) >= cap:
                break
            self.names.setdefault(name, None)


@dataclass(frozen=True)
class ModelBatch:
    """One model's valid events from one topic-partition, in offset order.

    ``segments`` holds each row's ``segment`` object (``None`` where absent),
    or is ``None`` when no row of the batch has one. ``segment_columns`` has
    one object array per name in the model's ``segment_keys``: each row's
    value of that key (a ``str``), or ``None`` where the event has no
    segment or not that key.
    """

    model_id: str
    role: str
    topic: str
    partition: int
    batch: Batch
    offsets: npt.NDArray[np.int64]
    versions: np.ndarray
    segments: np.ndarray | None = None
    event_ids: np.ndarray | None = None  # predictions and labels only
    segment_columns: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Decoded:
    """``consumed`` counts valid events per (model_id, topic), omitting zeros.

    ``unknown_features`` holds, per model with any, the feature values its
    events (valid or not) carried under names its baseline does not have.
    """

    batches: list[ModelBatch]
    dead: list[DeadLetter]
    consumed: dict[tuple[str, str], int]
    unknown_features: dict[str, UnknownFeatures] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelColumns:
    """What decoding needs to know about one configured model."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction_kind: str | None
    has_score: bool
    # numeric (regression) or categorical (classification); None: labels refused.
    label_kind: str | None = None
    # The segment keys the model's monitors split by: each gets a column of
    # values in ``ModelBatch.segment_columns``, at most MAX_LABEL_BYTES each.
    segment_keys: tuple[str, ...] = ()
    # Baseline features not decoded (the config turned them off): not
    # columns, but not unknown names either.
    ignored: tuple[str, ...] = ()

    @classmethod
    def from_baseline(cls, baseline: BaselineProfile) -> ModelColumns:
        features = baseline.features
        numeric = tuple(n for n, p in features.items() if isinstance(p, NumericProfile))
        categorical = tuple(n for n in features if n not in numeric)
        kind = None
        if baseline.prediction is not None:
            numeric_prediction = isinstance(baseline.prediction, NumericProfile)
            kind = NUMERIC if numeric_prediction else CATEGORICAL
        return cls(numeric, categorical, kind, baseline.score is not None)


class Decoder:
    """Turns consumed records into columns, per model, topic and partition."""

    def __init__(
        self,
        models: Mapping[str, ModelColumns],
        roles: Mapping[str, str],
        max_message_bytes: int = 1_000_000,
        max_features: int = 256,
    ) -> None:
        for topic, role in roles.items():
            if role not in (*ROLES, LABELS):
                msg = f"topic {topic!r} has role {role!r}, expected one of {(*ROLES, LABELS)}"
                raise ValueError(msg)
        for model_id, columns in models.items():
            if columns.prediction_kind not in (NUMERIC, CATEGORICAL, None):
                msg = f"model {model_id!r}: unknown prediction kind {columns.prediction_kind!r}"
                raise ValueError(msg)
        self.models = dict(models)
        self.roles = dict(roles)
        self.max_message_bytes = max_message_bytes
        self.max_features = max_features
        self._keys = {model_id: model_id.encode() for model_id in self.models}
        self._model_ids = tuple(self.models)
        self._model_codes = {model_id: i for i, model_id in enumerate(self.models)}
        self._topic_codes = {topic: i for i, topic in enumerate(self.roles)}
        # Layouts: models with equal columns share a code and so a group.
        # Labels need only the label kind, so they have codes of their own.
        self._layouts: list[ModelColumns] = []
        columns_codes = [_code_of(self._layouts, spec) for spec in self.models.values()]
        label_codes = [
            _code_of(self._layouts, ModelColumns((), (), None, False, spec.label_kind))
            for spec in self.models.values()
        ]
        # [0 for inputs or 1 for labels, model code] -> layout code
        self._layout_codes = np.array([columns_codes, label_codes], dtype=np.intp)
        self._label_topics = np.array([role == LABELS for role in self.roles.values()], np.intp)
        self._nonce = "z" + secrets.token_hex(16)
        self._separator = f',"{self._nonce}",'.encode()

    def decode(self, records: Sequence[Record]) -> Decoded:
        with _without_cyclic_gc():
            return self._decode(records)

    def _decode(self, records: Sequence[Record]) -> Decoded:
        groups: dict[_Place, _Group] = {}
        dead: list[DeadLetter] = []
        unknown: dict[str, UnknownFeatures] = {}
        for chunk, start in enumerate(range(0, len(records), CHUNK)):
            kept, events, model_ids = self._parse(records[start : start + CHUNK], dead)
            for place, group_records, group_events, codes in self._split(kept, events, model_ids):
                group = groups.get(place)
                if group is None:
                    group = groups[place] = self._new_group(place)
                group.add(group_records, group_events, codes, chunk)
        # Batches come in the order of (first chunk, topic, partition, model)
        # that one group per model and chunk gave, so alerts keep their order.
        found: list[tuple[tuple[int, int, int, int], ModelBatch]] = []
        for (topic, partition, _), group in groups.items():
            topic_code = self._topic_codes[topic]
            for code, batch in group.finish():
                found.append(((group.first_chunk[code], topic_code, partition, code), batch))
            dead.extend(group.dead_letters())
            for code, seen in group.unknown.items():
                mine = unknown.setdefault(self._model_ids[code], UnknownFeatures())
                mine.add(seen.names, seen.count, self.max_features)
        found.sort(key=itemgetter(0))
        batches = [batch for _, batch in found]
        consumed: dict[tuple[str, str], int] = {}
        for batch in batches:
            counted = (batch.model_id, batch.topic)
            consumed[counted] = consumed.get(counted, 0) + len(batch.offsets)
        dead.sort(key=_source)
        return Decoded(batches, dead, consumed, unknown)

    def _split(
        self, records: list[Record], events: list[Any], model_ids: list[str]
    ) -> list[tuple[_Place, list[Record], list[Any], npt.NDArray[np.intp]]]:
        """The chunk's events per (topic, partition, layout), with their model codes.

        Each group keeps the chunk's arrival order.
        """
        if not records:
            return []
        count = len(records)
        models = np.fromiter(map(self._model_codes.__getitem__, model_ids), np.intp, count)
        first = records[0]
        if len(set(map(_TOPIC, records))) == 1 and len(set(map(_PARTITION, records))) == 1:
            # The usual case: librdkafka hands out one partition's fetch at a time.
            kind = self._label_topics[self._topic_codes[first.topic]]
            layouts = self._layout_codes[kind][models]
            if layouts.min() == layouts.max():
                return [((first.topic, first.partition, int(layouts[0])), records, events, models)]
            keys = [layouts]
        else:
            topics = np.fromiter(
                map(self._topic_codes.__getitem__, map(_TOPIC, records)), np.intp, count
            )
            layouts = self._layout_codes[self._label_topics[topics], models]
            keys = [layouts, np.fromiter(map(_PARTITION, records), np.int64, count), topics]
        order = np.lexsort(keys)
        changed = np.zeros(count - 1, dtype=bool)
        for key in keys:
            changed |= np.diff(key[order]) != 0
        runs = np.split(order, np.flatnonzero(changed) + 1)
        if len(runs) == 1:
            return [((first.topic, first.partition, int(layouts[0])), records, events, models)]
        groups = []
        for run in runs:
            rows = run.tolist()
            head = records[rows[0]]
            place = (head.topic, head.partition, int(layouts[rows[0]]))
            groups.append((place, _take(records, rows), _take(events, rows), models[run]))
        return groups

    def _new_group(self, place: _Place) -> _Group:
        topic, partition, layout = place
        where = _Where(self.roles[topic], topic, partition)
        spec = self._layouts[layout]
        if where.role == LABELS:
            return _LabelGroup(where, spec, self.max_features, self._model_ids)
        return _Group(where, spec, self.max_features, self._model_ids)

    def _parse(
        self, records: Sequence[Record], dead: list[DeadLetter]
    ) -> tuple[list[Record], list[Any], list[str]]:
        """The usable records with their events and model ids; the rest go to ``dead``."""
        events = None
        try:
            events = self._parse_joined(records)
            if events is not None:
                model_ids = list(map(_MODEL_ID, events))
                if list(map(self._keys.__getitem__, model_ids)) == list(map(_KEY, records)):
                    return list(records), events, model_ids
        except Exception:
            # Some record is bad. ``_parse_each`` finds which, reusing the
            # events if they parsed.
            pass
        return self._parse_each(records, events, dead)

    def _parse_joined(self, records: Sequence[Record]) -> list[Any] | None:
        """Every record's event from one ``orjson.loads`` call, or ``None``.

        One call over ``[v1,"s",v2,"s",...,vn]`` saved about 0.3 µs an event
        (a tenth of the decoding time) over one call per value. ``s`` is a
        random string unknown to producers, so a value cannot forge it:
        finding it at every odd position proves that each value parsed as
        exactly one JSON value on its own (a value that opened a string or a
        bracket would have swallowed a separator). Otherwise the records are
        parsed one by one, which also names the bad ones.
        """
        if not set(map(_TOPIC, records)) <= self.roles.keys():
            return None
        values = list(map(_VALUE, records))
        if max(map(len, values)) > self.max_message_bytes:
            return None
        parsed = orjson.loads(b"[" + self._separator.join(values) + b"]")
        count = len(values)
        if len(parsed) != 2 * count - 1 or parsed[1::2].count(self._nonce) != count - 1:
            return None
        return parsed[::2]

    def _parse_each(
        self, records: Sequence[Record], events: list[Any] | None, dead: list[DeadLetter]
    ) -> tuple[list[Record], list[Any], list[str]]:
        kept: list[Record] = []
        good: list[Any] = []
        model_ids: list[str] = []
        for record, event in zip(records, events or repeat(_UNPARSED, len(records)), strict=True):
            admitted = self._admit(record, event)
            if isinstance(admitted, DeadLetter):
                dead.append(admitted)
            else:
                kept.append(record)
                good.append(admitted[0])
                model_ids.append(admitted[1])
        return kept, good, model_ids

    def _admit(self, record: Record, event: Any) -> tuple[dict[str, Any], str] | DeadLetter:
        """The record's event and model id, or the reason it cannot be used."""
        if record.topic not in self.roles:
            detail = f"topic {_show(record.topic)} has no role in the config"
            return DeadLetter(record, UNKNOWN_TOPIC, detail)
        if event is _UNPARSED:
            event = self._load(record)
            if isinstance(event, DeadLetter):
                return event
        if type(event) is not dict:
            detail = f"value is {_json_name(event)}, expected a JSON object"
            return DeadLetter(record, NOT_AN_OBJECT, detail)
        model_id = event.get("model_id")
        if model_id is None:
            detail = _absent(event, "model_id")
            if self.roles[record.topic] == LABELS:
                # Labels are joined per model; an event_id alone cannot say which.
                detail += "; a label must name its model (look it up from the event_id)"
            return DeadLetter(record, MISSING_FIELD, detail)
        if type(model_id) is not str:
            detail = f"field 'model_id' is {_json_name(model_id)}, expected a string"
            return DeadLetter(record, WRONG_TYPE, detail)
        expected = self._keys.get(model_id)
        if expected is None:
            return DeadLetter(record, UNKNOWN_MODEL, f"model {_show(model_id)} is not configured")
        if record.key != expected:
            return DeadLetter(record, KEY_MISMATCH, _key_detail(record.key, model_id), model_id)
        return event, model_id

    def _load(self, record: Record) -> Any:
        value = record.value
        if not value:
            return DeadLetter(record, EMPTY, "the message has no value")
        if len(value) > self.max_message_bytes:
            detail = f"value is {len(value)} bytes, over the limit of {self.max_message_bytes}"
            return DeadLetter(record, OVERSIZED, detail)
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as error:
            return DeadLetter(record, *_parse_failure(value, error))


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Pause CPython's cycle collector while a batch is decoded.

    Decoding builds thousands of dicts and lists that live until their chunk
    is done. Each allocation counts toward the collector's threshold, so it
    would run again and again over young objects that cannot form cycles
    (parsed JSON is a tree); on the reference workload that was 6-9% of the
    decoding time. Reference counting still frees everything as usual. The
    collector's state is global: a thread allocating meanwhile only finds it
    paused, and it is left as it was found.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _layout(dicts: list[Any]) -> list[str] | None:
    """The keys every dict has, in the same order; ``None`` if they differ (or are none)."""
    layout = list(dicts[0]) if dicts else []
    if layout and list(chain.from_iterable(dicts)) == layout * len(dicts):
        # Dict keys are unique, so equal concatenations mean equal layouts.
        return layout
    return None


def _fields(dicts: list[Any], names: Sequence[str], layout: Any = _ASK) -> list[list[Any]]:
    """Each name's value in every dict, ``None`` where absent: one list per name.

    ``layout`` is ``_layout(dicts)`` when the caller has it already.
    """
    if layout is _ASK:
        layout = _layout(dicts)
    if layout is not None:
        # Every dict has the same keys in the same order, so each field sits
        # at a fixed stride in the flat list of values.
        flat = list(chain.from_iterable(map(dict.values, dicts)))
        width = len(layout)
        where = {name: i for i, name in enumerate(layout)}
        return [flat[where[n] :: width] if n in where else [None] * len(dicts) for n in names]
    return [[d.get(name) for d in dicts] for name in names]


@dataclass(frozen=True)
class _Where:
    role: str
    topic: str
    partition: int


class _Group:
    """The rows of the models sharing one layout on one topic-partition.

    Rows are gathered chunk by chunk, each with its model's code. Each
    chunk's values are checked and turned into numpy arrays right away, so
    the Python objects behind them die while still in cache; ``finish``
    joins the chunks and splits them by model. A bad value leaves a
    placeholder and its row is marked (first reason wins); every column
    drops the marked rows at the end.
    """

    def __init__(
        self, where: _Where, spec: ModelColumns, max_features: int, model_ids: Sequence[str]
    ) -> None:
        self.where = where
        self.spec = spec
        self.max_features = max_features
        self.model_ids = model_ids
        # Model code -> index of the chunk where the model first had a row.
        self.first_chunk: dict[int, int] = {}
        self.records: list[Record] = []
        self.bad: dict[int, tuple[str, str]] = {}
        self.parts: dict[str, list[np.ndarray]] = {}
        self.numeric = {*spec.numeric}
        if where.role == PREDICTIONS and spec.prediction_kind is not None:
            self.parts[PREDICTION] = []
            if spec.prediction_kind == NUMERIC:
                self.numeric.add(PREDICTION)
        if where.role == PREDICTIONS and spec.has_score:
            self.parts[SCORE] = []
            self.numeric.add(SCORE)
        self.features = (*spec.numeric, *spec.categorical)
        self.known = frozenset((*self.features, *spec.ignored))
        # Model code -> feature names its events carried that its baseline lacks.
        self.unknown: dict[int, UnknownFeatures] = {}
        self.rules: list[tuple[frozenset[type], _Fix]] = [
            (_NUMBER_OR_NULL, self._numeric_fix(name)) for name in spec.numeric
        ] + [(_STR_OR_NULL, self._categorical_fix(name)) for name in spec.categorical]
        for name in self.features:
            self.parts[name] = []
        self.codes: list[npt.NDArray[np.intp]] = []
        self.ts: list[np.ndarray] = []
        self.offsets: list[np.ndarray] = []
        self.versions: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        # Per chunk: each row's segment object, and whether the event had one
        # (even a bad one); ``None`` for a chunk without any.
        self.segments: list[np.ndarray | None] = []
        self.has_segment: list[npt.NDArray[np.bool_] | None] = []
        self.segment_values: dict[str, list[np.ndarray | None]] = {
            name: [] for name in spec.segment_keys
        }
        self._events: list[Any] = []
        self._base = 0

    def add(
        self, records: list[Record], events: list[Any], codes: npt.NDArray[np.intp], chunk: int
    ) -> None:
        self._start(records, events, codes, chunk)
        ids, versions, ts, features, predictions, scores, segments = _fields(events, _ENVELOPE)
        ids = self._required_strings("event_id", ids)
        if self.where.role == PREDICTIONS:
            self.ids.append(_objects(ids))
        versions = self._required_strings("model_version", versions)
        self._check_length("model_version", versions)
        self.versions.append(_objects(versions))
        self.ts.append(self._timestamps(ts))
        self._segments(segments)
        features = self._features(features)
        if self.where.role == PREDICTIONS:
            predictions = self._prediction(predictions)
            scores = self._clean(scores, _NUMBER_OR_NULL, self._score_fix)
            self._keep(PREDICTION, predictions)
            self._keep(SCORE, scores)
        layout = _layout(features)
        values = _fields(features, self.features, layout)
        self._unknown_names(features, codes, layout)
        for name, column, (clean, fix) in zip(self.features, values, self.rules, strict=True):
            self._keep(name, self._clean(column, clean, fix))
        self._events = []

    def _start(
        self, records: list[Record], events: list[Any], codes: npt.NDArray[np.intp], chunk: int
    ) -> None:
        self._base = len(self.records)
        self._events = events
        self.records.extend(records)
        self.codes.append(codes)
        for code in np.unique(codes).tolist():
            self.first_chunk.setdefault(code, chunk)
        self.offsets.append(np.fromiter(map(_OFFSET, records), np.int64, len(records)))

    def finish(self) -> list[tuple[int, ModelBatch]]:
        """One batch per model that kept a row, with the model's code."""
        columns = {name: _join(parts) for name, parts in self.parts.items()}
        rows = {"ts": _join(self.ts), "offsets": _join(self.offsets)}
        rows["versions"] = _join(self.versions)
        if self.ids:
            rows["event_ids"] = _join(self.ids)
        codes = _join(self.codes)
        # A model's batch has ``segments`` if any of its events had one, even
        # an event dropped as bad.
        with_segments: set[int] = set()
        if any(part is not None for part in self.segments):
            rows["segments"] = self._filled(self.segments)
            has = _join(
                [
                    _falses(len(offsets)) if part is None else part
                    for part, offsets in zip(self.has_segment, self.offsets, strict=True)
                ]
            )
            with_segments = set(np.unique(codes[has]).tolist())
        keyed = {name: self._filled(parts) for name, parts in self.segment_values.items()}
        index = self._rows_to_keep(rows["offsets"], codes)
        if index is not None:
            if not len(index):
                return []
            codes = codes[index]
            rows = {name: values[index] for name, values in rows.items()}
            columns = {name: values[index] for name, values in columns.items()}
            keyed = {name: values[index] for name, values in keyed.items()}
        if len(self.first_chunk) == 1:
            runs = [(int(codes[0]), 0, len(codes))]
        else:
            bounds = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist(), len(codes)]
            starts = codes[bounds[:-1]].tolist()
            runs = list(zip(starts, bounds[:-1], bounds[1:], strict=True))
        segments = rows.get("segments")
        out = []
        for code, start, stop in runs:
            part = slice(start, stop)
            batch = ModelBatch(
                model_id=self.model_ids[code],
                role=self.where.role,
                topic=self.where.topic,
                partition=self.where.partition,
                batch=Batch(rows["ts"][part], {n: v[part] for n, v in columns.items()}),
                offsets=rows["offsets"][part],
                versions=rows["versions"][part],
                segments=segments[part] if segments is not None and code in with_segments else None,
                event_ids=rows["event_ids"][part] if "event_ids" in rows else None,
                segment_columns={name: values[part] for name, values in keyed.items()},
            )
            out.append((code, batch))
        return out

    def _rows_to_keep(
        self, offsets: npt.NDArray[np.int64], codes: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.intp] | None:
        """Positions of the good rows by model, each model's in offset order.

        ``None`` if that is every row as is. Rows with equal offsets keep
        their arrival order.
        """
        one_model = len(self.first_chunk) == 1
        if one_model and not self.bad and _increasing(offsets):
            return None
        if self.bad:
            keep = np.ones(len(offsets), dtype=bool)
            keep[list(self.bad)] = False
            index = np.flatnonzero(keep)
        else:
            index = np.arange(len(offsets))
        in_order = _increasing(offsets[index])
        if one_model:
            return index if in_order else index[np.argsort(offsets[index], kind="stable")]
        if in_order:
            return index[np.argsort(codes[index], kind="stable")]
        return index[np.lexsort((offsets[index], codes[index]))]

    def _filled(self, parts: list[np.ndarray | None]) -> np.ndarray:
        """The chunks' parts joined, with ``None`` rows for a chunk without one."""
        filled = [
            _nones(len(offsets)) if part is None else part
            for part, offsets in zip(parts, self.offsets, strict=True)
        ]
        return _join(filled)

    def dead_letters(self) -> list[DeadLetter]:
        if not self.bad:
            return []
        codes = _join(self.codes)
        return [
            DeadLetter(self.records[row], reason, detail, self.model_ids[codes[row]])
            for row, (reason, detail) in sorted(self.bad.items())
        ]

    def mark(self, row: int, reason: str, detail: str) -> None:
        self.bad.setdefault(row, (reason, detail))

    def _keep(self, name: str, values: list[Any]) -> None:
        parts = self.parts.get(name)
        if parts is not None:
            numeric = name in self.numeric
            parts.append(np.array(values, dtype=np.float64) if numeric else _objects(values))

    # One chunk's columns. ``row`` counts within the chunk being added.

    def _mark_here(self, row: int, reason: str, detail: str) -> None:
        self.mark(self._base + row, reason, detail)

    def _clean(self, values: list[Any], clean: frozenset[type], fix: _Fix) -> list[Any]:
        if set(map(type, values)) <= clean:
            return values
        return [v if type(v) in clean else fix(row, v) for row, v in enumerate(values)]

    def _required_strings(self, name: str, values: list[Any]) -> list[Any]:
        def fix(row: int, value: Any) -> None:
            self._required(row, name, value, "a string")

        return self._clean(values, _STR, fix)

    def _required(self, row: int, name: str, value: Any, expected: str) -> None:
        if value is None:
            self._mark_here(row, MISSING_FIELD, _absent(self._events[row], name))
        else:
            detail = f"field {name!r} is {_json_name(value)}, expected {expected}"
            self._mark_here(row, WRONG_TYPE, detail)

    def _timestamps(self, values: list[Any]) -> npt.NDArray[np.float64]:
        ts = np.array(self._clean(values, _NUMBER, self._timestamp_fix), dtype=np.float64)
        for row in np.flatnonzero(~((ts >= 0.0) & (ts < MAX_TS))).tolist():
            self._mark_here(row, BAD_TIMESTAMP, _ts_range_detail(values[row]))
        return ts

    def _timestamp_fix(self, row: int, value: Any) -> float:
        if type(value) is not str:
            self._required(row, "ts", value, "a number or an RFC 3339 string")
            return math.nan
        parsed = parse_timestamp(value)
        if parsed is None or not in_range(parsed):
            detail = f"field 'ts' is {_show(value)}, not an RFC 3339 time from 1970 on"
            self._mark_here(row, BAD_TIMESTAMP, detail)
            return math.nan
        return parsed

    def _features(self, values: list[Any]) -> list[Any]:
        if not set(map(type, values)) <= _DICT:
            for row, value in enumerate(values):
                if type(value) is not dict:
                    self._required(row, "features", value, "an object")
                    values[row] = {}
        if max(map(len, values)) > self.max_features:
            for row, value in enumerate(values):
                if len(value) > self.max_features:
                    detail = f"{len(value)} features, over the limit of {self.max_features}"
                    self._mark_here(row, TOO_MANY_FEATURES, detail)
        return values

    def _unknown_names(
        self, features: list[Any], codes: npt.NDArray[np.intp], layout: list[str] | None
    ) -> None:
        """Count the chunk's feature values under names the models' baselines lack."""
        known, cap = self.known, self.max_features
        if layout is not None:
            extra = [name for name in layout if name not in known]
            if extra:
                models, events = np.unique(codes, return_counts=True)
                for code, count in zip(models.tolist(), events.tolist(), strict=True):
                    self._unknown_of(code).add(extra, count * len(extra), cap)
            return
        if set(chain.from_iterable(features)) <= known:
            return
        for code, event in zip(codes.tolist(), features, strict=True):
            extra_names = event.keys() - known
            if extra_names:
                self._unknown_of(code).add(extra_names, len(extra_names), cap)

    def _unknown_of(self, code: int) -> UnknownFeatures:
        found = self.unknown.get(code)
        if found is None:
            found = self.unknown[code] = UnknownFeatures()
        return found

    def _segments(self, values: list[Any]) -> None:
        """Checks the chunk's segments and keeps them, and their keys' values."""
        types = set(map(type, values))
        if types == {_NULL}:
            self.segments.append(None)
            self.has_segment.append(None)
            for parts in self.segment_values.values():
                parts.append(None)
            return
        column = _objects(values)
        has = _not_null(column)
        clean = types <= _DICT_OR_NULL
        if clean:
            labels = chain.from_iterable(map(dict.values, filter(None, values)))
            clean = set(map(type, labels)) <= _STR
        if not clean:
            for row, segment in enumerate(values):
                problem = _segment_problem(segment)
                if problem:
                    self._mark_here(row, WRONG_TYPE, problem)
                    values[row] = None
                    column[row] = None
        self.segments.append(column)
        self.has_segment.append(has)
        if self.segment_values:
            self._segment_columns(values, has if clean else _not_null(column))

    def _segment_columns(self, values: list[Any], has: npt.NDArray[np.bool_]) -> None:
        """Each segment key's value per row, from the chunk's checked segments."""
        present = np.flatnonzero(has)
        if not len(present):
            for parts in self.segment_values.values():
                parts.append(None)
            return
        whole = len(present) == len(values)
        found = _fields(
            values if whole else _take(values, present.tolist()), self.spec.segment_keys
        )
        for name, labels in zip(self.spec.segment_keys, found, strict=True):
            for row, size in _too_long(labels):
                self._mark_here(
                    int(present[row]), TOO_LONG, _too_long_detail("segment", name, size)
                )
            if whole:
                self.segment_values[name].append(_objects(labels))
            else:
                keyed = _nones(len(values))
                keyed[present] = _objects(labels)
                self.segment_values[name].append(keyed)

    def _check_length(self, name: str, values: list[Any]) -> None:
        for row, size in _too_long(values):
            self._mark_here(row, TOO_LONG, _too_long_detail("field", name, size))

    def _prediction(self, values: list[Any]) -> list[Any]:
        kind = self.spec.prediction_kind
        if kind == NUMERIC:
            return self._clean(values, _NUMBER, self._numeric_prediction_fix)
        if kind == CATEGORICAL:
            return self._clean(values, _STR, self._categorical_prediction_fix)
        return self._clean(values, _NUMBER_OR_STR, self._categorical_prediction_fix)

    def _numeric_prediction_fix(self, row: int, value: Any) -> float:
        expected = "a number (the baseline profiles the prediction as numeric)"
        self._required(row, "prediction", value, expected)
        return math.nan

    def _categorical_prediction_fix(self, row: int, value: Any) -> str | None:
        if type(value) in _NUMBER:
            return category_label(value)
        self._required(row, "prediction", value, "a number or a string")
        return None

    def _score_fix(self, row: int, value: Any) -> float:
        self._mark_here(row, WRONG_TYPE, f"field 'score' is {_json_name(value)}, expected a number")
        return math.nan

    def _numeric_fix(self, name: str) -> _Fix:
        def fix(row: int, value: Any) -> float:
            detail = f"feature {_show(name)} is {_json_name(value)}, expected a number"
            self._mark_here(row, WRONG_TYPE, detail)
            return math.nan

        return fix

    def _categorical_fix(self, name: str) -> _Fix:
        def fix(row: int, value: Any) -> str | None:
            if type(value) in (int, float, bool):
                return category_label(value)
            expected = "a string, number or boolean"
            detail = f"feature {_show(name)} is {_json_name(value)}, expected {expected}"
            self._mark_here(row, WRONG_TYPE, detail)
            return None

        return fix


LABEL = "__label__"
_LABEL_FIELDS = ("event_id", "ts", "label")
_LABEL_CLASS: frozenset[type] = frozenset({str})


class _LabelGroup(_Group):
    """Label events of the models sharing a label kind on one topic-partition.

    Each event has ``event_id``, ``ts`` and ``label``. The batch's only
    column is ``__label__``: floats for a regression model, class labels
    (JSON text, as predictions) for a classifier.
    """

    def __init__(
        self, where: _Where, spec: ModelColumns, max_features: int, model_ids: Sequence[str]
    ) -> None:
        labels_only = ModelColumns((), (), None, False, spec.label_kind)
        super().__init__(where, labels_only, max_features, model_ids)
        self.label_kind = spec.label_kind
        self.numeric = {LABEL} if spec.label_kind == NUMERIC else set()
        self.parts = {LABEL: []}

    def add(
        self, records: list[Record], events: list[Any], codes: npt.NDArray[np.intp], chunk: int
    ) -> None:
        self._start(records, events, codes, chunk)
        count = len(records)
        ids, ts, labels = _fields(events, _LABEL_FIELDS)
        self.ids.append(_objects(self._required_strings("event_id", ids)))
        self.ts.append(self._timestamps(ts))
        self.versions.append(np.full(count, "", dtype=object))
        self.segments.append(None)
        self.has_segment.append(None)
        if self.label_kind is None:
            for row, code in enumerate(codes.tolist()):
                detail = (
                    f"model {_show(self.model_ids[code])} has no labels section in the config, "
                    "so its labels are not joined"
                )
                self._mark_here(row, LABELS_DISABLED, detail)
        elif self.label_kind == NUMERIC:
            labels = self._clean(labels, _NUMBER, self._regression_fix)
        else:
            labels = self._clean(labels, _LABEL_CLASS, self._class_fix)
        self._keep(LABEL, labels)
        self._events = []

    def _regression_fix(self, row: int, value: Any) -> float:
        expected = "a number (the model's labels.task is regression)"
        self._required(row, "label", value, expected)
        return math.nan

    def _class_fix(self, row: int, value: Any) -> str | None:
        if type(value) in (int, float, bool):
            return category_label(value)
        self._required(row, "label", value, "a class label: a string, number or boolean")
        return None


def _parse_failure(value: bytes, error: orjson.JSONDecodeError) -> tuple[str, str]:
    where = _non_finite_place(value)
    if where is not None:
        return NON_FINITE, f"{where} is not a finite number"
    return MALFORMED_JSON, f"not valid JSON: {error}"


def _non_finite_place(value: bytes) -> str | None:
    # orjson rejects NaN, Infinity and 1e400 as syntax errors. The standard
    # library reads them (as nan and inf), so a document it accepts is
    # valid JSON apart from a non-finite number, which we then locate.
    try:
        # Integers parsed as floats: one too large for a double becomes inf
        # (orjson refuses those), and none hits the int digit limit.
        document = json.loads(value.decode("utf-8"), parse_int=float)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return _path_name(path)
        if isinstance(item, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(item))))
    return None


def _path_name(path: tuple[str, ...]) -> str:
    if len(path) == 2 and path[0] == "features":
        return f"feature {_show(path[1])}"
    if not path:
        return "the value"
    return f"field {_show('.'.join(path))}"


def _ts_range_detail(value: Any) -> str:
    return f"field 'ts' is {_show(value)}, {range_problem(value)}"


def _segment_problem(segment: Any) -> str | None:
    if segment is None:
        return None
    if type(segment) is not dict:
        return f"field 'segment' is {_json_name(segment)}, expected an object of strings"
    for key, value in segment.items():
        if type(value) is not str:
            return f"segment {_show(key)} is {_json_name(value)}, expected a string"
    return None


def _source(letter: DeadLetter) -> tuple[str, int, int]:
    return letter.record.topic, letter.record.partition, letter.record.offset


def _absent(event: Mapping[str, Any], name: str) -> str:
    return f"field {name!r} is null" if name in event else f"field {name!r} is missing"


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _code_of(layouts: list[ModelColumns], spec: ModelColumns) -> int:
    """The code of ``spec`` in ``layouts``, added if no equal layout is there yet."""
    for code, layout in enumerate(layouts):
        if layout == spec:
            return code
    layouts.append(spec)
    return len(layouts) - 1


def _too_long(labels: list[Any]) -> list[tuple[int, int]]:
    """Rows whose string is over ``MAX_LABEL_BYTES`` in UTF-8, with its size in bytes.

    Whole-list checks first: a character is at most 4 bytes, and an ASCII
    one exactly 1 (``str.isascii`` is a flag lookup in CPython), so only a
    list with a long non-ASCII or over-long string is walked.
    """
    longest = max(map(len, filter(None, labels)), default=0)
    if longest <= MAX_LABEL_BYTES // 4:
        return []
    if longest <= MAX_LABEL_BYTES and all(map(str.isascii, filter(None, labels))):
        return []
    found = []
    for row, label in enumerate(labels):
        if label and len(label) > MAX_LABEL_BYTES // 4:
            size = len(label.encode("utf-8", "surrogatepass"))
            if size > MAX_LABEL_BYTES:
                found.append((row, size))
    return found


def _too_long_detail(kind: str, name: str, size: int) -> str:
    return f"{kind} {_show(name)} is {size} bytes, over the limit of {MAX_LABEL_BYTES}"


def _take(items: list[Any], rows: list[int]) -> list[Any]:
    if len(rows) == 1:
        return [items[rows[0]]]
    return list(itemgetter(*rows)(items))


def _increasing(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] > values[:-1]))


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _nones(count: int) -> np.ndarray:
    return np.full(count, None, dtype=object)


def _falses(count: int) -> npt.NDArray[np.bool_]:
    return np.zeros(count, dtype=bool)


def _not_null(column: np.ndarray) -> npt.NDArray[np.bool_]:
    """``value is not None`` for each value of an object array, in one numpy call."""
    return np.asarray(column != None, dtype=bool)  # noqa: E711


def _objects(values: list[Any]) -> np.ndarray:
    # fromiter stores each value as is; np.array would turn lists into rows.
    return np.fromiter(values, dtype=object, count=len(values))


def _key_detail(key: bytes | None, model_id: str) -> str:
    if key is None:
        return f"the message has no key; expected the model_id {_show(model_id)}"
    shown = _show(key.decode("utf-8", "replace"))
    return f"message key {shown} does not match model_id {_show(model_id)}"
