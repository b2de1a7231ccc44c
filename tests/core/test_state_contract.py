"""One contract for every stateful class of the core, run over the registry below.

Each class must:
- save plain data that survives an orjson round trip unchanged;
- continue after save → orjson → restore exactly as if it had never
  stopped (same reports, bit-identical state), and end in the same state
  however its input is cut into batches;
- refuse, with the full key path in the message, every damaged state: NaN
  or ±inf for a number, a bool for a number or a count, a negative count,
  an int for a flag, a missing key, an unknown key, another kind or
  version, a list where a mapping belongs;
- keep its saved size bounded on a long stream;
- keep a loadable state after the most extreme values it accepts.

A new stateful class joins by adding one ``Stateful`` entry to ``STATEFUL``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
import orjson
import pytest
from statepaths import dotted, edited, walk

from driftstream.core.baseline import build_profile
from driftstream.core.batch import Batch
from driftstream.core.detectors import ADWIN, DDM, PageHinkley
from driftstream.core.episodes import DetectorEpisodes, WindowEpisodes
from driftstream.core.monitor import ModelMonitor, settings_from_baseline
from driftstream.core.settings import EpisodeSettings, MonitorSettings, WindowSettings
from driftstream.core.sketches import CategorySketch, NumericSketch
from driftstream.core.windows import CountClock, TimeClock
from driftstream.synthetic import frame, monitor_columns

MONITOR_LIMIT = 32 * 1024  # bytes of state per monitor at the defaults (DESIGN.md, "Targets")


@dataclass(frozen=True)
class Stateful:
    """How to drive one stateful class through the contract.

    ``events(n, seed)`` builds a stream of ``n`` events, ``cut(events, start,
    stop)`` the batch of events ``[start, stop)``, and ``feed(obj, batch)``
    what the object reports for that batch. Key patterns are ``fnmatch``
    patterns over dotted key paths (``features.amount.sketch.counts[0]``).
    """

    name: str
    make: Callable[[], Any]
    restore: Callable[[Any], Any]
    events: Callable[[int, int], Any]
    cut: Callable[[Any, int, int], Any]
    feed: Callable[[Any, Any], list[Any]]
    # The largest values the class accepts, as one batch (None: nothing special).
    extreme: Callable[[], Any] | None = None
    short: int = 5_000
    long: int = 200_000
    # Bytes the saved state may grow from the short stream to the long one.
    growth: int = 0
    # Mappings whose keys are data (category names, open episodes), not fields.
    data_maps: tuple[str, ...] = ()
    # Integer fields that may be negative.
    signed: tuple[str, ...] = ()
    # Subtrees left out of the per-key refusals (the same code as a covered one).
    skip: tuple[str, ...] = ()

    def run(self, obj: Any, events: Any, n: int, cuts: list[int]) -> list[list[Any]]:
        """Feed events ``[0, n)`` in batches cut at ``cuts``; the reports per batch."""
        reports, start = [], 0
        for stop in [*cuts, n]:
            reports.append(self.feed(obj, self.cut(events, start, stop)))
            start = stop
        return reports

    def __str__(self) -> str:
        return self.name


def json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(state))


# ------------------------------------------------------------------ streams


def shifting_values(n: int, seed: int) -> np.ndarray:
    """Unit noise around a mean that jumps every 1,500 points: detections to find."""
    rng = np.random.default_rng(seed)
    means = np.repeat(rng.choice([-1.5, 1.5], size=n // 1500 + 1).cumsum(), 1500)[:n]
    return means + rng.normal(size=n)


def error_values(n: int, seed: int) -> np.ndarray:
    """0/1 errors whose rate steps up every 1,500 points, then starts low again."""
    rng = np.random.default_rng(seed)
    rate = np.tile(np.repeat([0.05, 0.3], 1500), n // 3000 + 1)[:n]
    return (rng.random(n) < rate).astype(np.float64)


def sketch_values(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Values with nulls, NaN and ±inf, and the null mask."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.3, 1.2, n)
    kind = rng.integers(0, 20, n)
    values[kind == 0] = np.nan
    values[kind == 1] = np.inf
    values[kind == 2] = -np.inf
    return values, kind == 3


def labels(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    column = rng.zipf(1.3, n).clip(max=60).astype(str).astype(object)
    column[rng.random(n) < 0.05] = None
    return column


def event_times(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000 + np.cumsum(rng.exponential(0.05, n))
    ts[rng.random(n) < 0.02] -= 20.0  # late events
    return ts


def window_values(n: int, seed: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    keys = rng.choice([f"f{i}|psi|baseline" for i in range(20)], n)
    return list(zip(keys.tolist(), rng.gamma(0.6, 0.1, n).tolist(), strict=True))


def detections(n: int, seed: int) -> list[tuple[str, int]]:
    """Detection positions in [0, n), a few per thousand, over a fixed set of keys."""
    rng = np.random.default_rng(seed)
    positions = np.flatnonzero(rng.random(n) < 0.003)
    keys = rng.choice([f"f{i}|adwin" for i in range(12)], positions.size)
    return list(zip(keys.tolist(), positions.tolist(), strict=True))


def cut_columns(events: Any, start: int, stop: int) -> Any:
    return tuple(part[start:stop] for part in events)


def cut_list(events: Any, start: int, stop: int) -> Any:
    return events[start:stop]


def cut_detections(events: Any, start: int, stop: int) -> Any:
    return [(key, pos) for key, pos in events if start <= pos < stop], stop


# ------------------------------------------------------------------- feeds


def feed_detector(detector: Any, values: np.ndarray) -> list[Any]:
    return detector.update_many(values).tolist()


def feed_numeric(sketch: NumericSketch, batch: tuple[np.ndarray, np.ndarray]) -> list[Any]:
    sketch.update(*batch)
    return [sketch.count, sketch.total]


def feed_category(sketch: CategorySketch, batch: tuple[np.ndarray]) -> list[Any]:
    sketch.update(batch[0])
    return [sketch.count, sketch.other_count]


def feed_clock(clock: Any, batch: tuple[np.ndarray]) -> list[Any]:
    ts, closed = batch[0], []
    for segment in clock.plan(ts):
        clock.add(ts[segment.start : segment.stop])
        if segment.closes:
            closed.append((clock.close(), segment.trigger))
    return closed


def feed_window_episodes(episodes: WindowEpisodes, batch: list[tuple[str, float]]) -> list[Any]:
    return [episodes.observe(key, value, 0.1, True) for key, value in batch]


def feed_detector_episodes(episodes: DetectorEpisodes, batch: Any) -> list[Any]:
    found, end = batch
    keys = sorted({key for key, _ in found} | set(episodes.to_state()["open"]))
    return [episodes.advance(key, [pos for k, pos in found if k == key], end) for key in keys]


# ---------------------------------------------------------------- monitors


@cache
def baseline() -> Any:
    return build_profile(
        frame(20_000, seed=1),
        model_id="fraud",
        prediction="prediction",
        score="score",
        target="label",
    )


@cache
def monitor_settings(kind: str) -> MonitorSettings:
    settings = settings_from_baseline(baseline())
    if kind == "time":
        window = WindowSettings(kind="time", seconds=30.0, min_count=100)
        return replace(settings, window=window, compare_previous=True)
    return settings


def monitor_events(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stable traffic with a drifted stretch from 40% to 70% of the stream."""
    start, stop = int(0.4 * n), int(0.7 * n)
    parts = [
        monitor_columns(frame(start, seed)),
        monitor_columns(frame(stop - start, seed + 1, drift=("amount", "country"))),
        monitor_columns(frame(n - stop, seed + 2)),
    ]
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return 1_700_000_000.0 + 0.01 * np.arange(n), columns


def cut_batch(events: Any, start: int, stop: int) -> Batch:
    ts, columns = events
    return Batch(ts[start:stop], {k: v[start:stop] for k, v in columns.items()})


def extreme_batch() -> Batch:
    """Every huge finite value a producer may send, in the numeric columns."""
    ts, columns = monitor_events(400, seed=9)
    poison = np.array([1e200, -1e300, 1.7e308, -1.7e308, 5e-324])
    for name in ("amount", "latency_ms", "__score__"):
        columns[name][: poison.size] = poison
    return Batch(ts, columns)


def monitor_case(kind: str) -> Stateful:
    settings = monitor_settings(kind)
    # amount (numeric, with detectors) and country (categorical) stand for the rest.
    others = [f.name for f in settings.features if f.name not in ("amount", "country")]
    return Stateful(
        name=f"monitor-{kind}",
        make=lambda: ModelMonitor(settings, baseline()),
        restore=lambda state: ModelMonitor.from_state(settings, baseline(), state),
        events=monitor_events,
        cut=cut_batch,
        feed=lambda monitor, batch: monitor.update(batch),
        extreme=extreme_batch,
        short=20_000,
        long=200_000,
        # ADWIN's window grows with log2 of its width on a stable stream.
        growth=4_000,
        data_maps=("features", "features.*.detectors", "*.open", "*.counts"),
        signed=("clock.index",),
        skip=tuple(f"features.{name}*" for name in others),
    )


# ---------------------------------------------------------------- registry

EDGES = [-1.0, 0.0, 0.5, 2.0]

STATEFUL = [
    Stateful(
        name="adwin",
        make=ADWIN,
        restore=ADWIN.from_state,
        events=shifting_values,
        cut=cut_list,
        feed=feed_detector,
        extreme=lambda: np.array([1e100, -1e100, 1e100, 0.0] * 10),
        # A window of n points holds about max_buckets * log2(n) buckets.
        growth=1_500,
    ),
    Stateful(
        name="page_hinkley",
        make=PageHinkley,
        restore=PageHinkley.from_state,
        events=shifting_values,
        cut=cut_list,
        feed=feed_detector,
        extreme=lambda: np.array([1e100, -1e100, 1e100, 0.0] * 10),
    ),
    Stateful(
        name="ddm",
        make=DDM,
        restore=DDM.from_state,
        events=error_values,
        cut=cut_list,
        feed=feed_detector,
        extreme=lambda: np.array([1.0, 0.0] * 20),
    ),
    Stateful(
        name="numeric-sketch",
        make=lambda: NumericSketch(EDGES),
        restore=lambda state: NumericSketch.from_state(state, edges=EDGES),
        events=sketch_values,
        cut=cut_columns,
        feed=feed_numeric,
        extreme=lambda: (
            np.array([1e200, -1e300, 1.7e308, -1.7e308, 5e-324, 1.0]),
            np.zeros(6, dtype=bool),
        ),
    ),
    Stateful(
        name="category-sketch",
        make=lambda: CategorySketch(cap=10, categories=["1", "2"]),
        restore=CategorySketch.from_state,
        events=lambda n, seed: (labels(n, seed),),
        cut=cut_columns,
        feed=feed_category,
        data_maps=("counts",),
    ),
    Stateful(
        name="count-clock",
        make=lambda: CountClock(97),
        restore=CountClock.from_state,
        events=lambda n, seed: (event_times(n, seed),),
        cut=cut_columns,
        feed=feed_clock,
        extreme=lambda: (np.array([1.7e308, -1.7e308, 0.0]),),
    ),
    Stateful(
        name="time-clock",
        make=lambda: TimeClock(7.0),
        restore=TimeClock.from_state,
        events=lambda n, seed: (event_times(n, seed),),
        cut=cut_columns,
        feed=feed_clock,
        extreme=lambda: (np.array([1.7e308, -1.7e308, 0.0]),),
        signed=("index",),
    ),
    Stateful(
        name="window-episodes",
        make=lambda: WindowEpisodes(EpisodeSettings()),
        restore=lambda state: WindowEpisodes.from_state(EpisodeSettings(), state),
        events=window_values,
        cut=cut_list,
        feed=feed_window_episodes,
        data_maps=("open",),
    ),
    Stateful(
        name="detector-episodes",
        make=lambda: DetectorEpisodes(EpisodeSettings(detector_quiet_events=500)),
        restore=lambda state: DetectorEpisodes.from_state(
            EpisodeSettings(detector_quiet_events=500), state
        ),
        events=detections,
        cut=cut_detections,
        feed=feed_detector_episodes,
        data_maps=("open",),
    ),
    monitor_case("count"),
    monitor_case("time"),
]


@pytest.fixture(params=STATEFUL, ids=str)
def case(request: pytest.FixtureRequest) -> Stateful:
    return request.param


def cuts_for(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.arange(1, n), size=min(n - 1, 25), replace=False).tolist())


@cache
def fed_state(name: str) -> dict[str, Any]:
    """The state after the short stream: every part populated, nothing reset."""
    case = next(c for c in STATEFUL if c.name == name)
    obj = case.make()
    case.run(obj, case.events(case.short, 0), case.short, cuts_for(case.short, 0))
    return obj.to_state()


# ------------------------------------------------------------ round trips


def test_state_survives_a_json_round_trip(case):
    state = fed_state(case.name)
    assert json_round_trip(state) == state
    restored = case.restore(json_round_trip(state))
    assert orjson.dumps(restored.to_state()) == orjson.dumps(state)


@pytest.mark.parametrize("every", [1, 4])
def test_save_restore_continue_equals_never_stopping(case, every):
    events = case.events(case.short, 1)
    cuts = cuts_for(case.short, 1)
    steady = case.make()
    expected = case.run(steady, events, case.short, cuts)
    assert any(expected), "the stream must make the object report something"
    obj, got, start = case.make(), [], 0
    for i, stop in enumerate([*cuts, case.short]):
        got.append(case.feed(obj, case.cut(events, start, stop)))
        if i % every == 0:
            obj = case.restore(json_round_trip(obj.to_state()))
        start = stop
    assert got == expected
    assert orjson.dumps(obj.to_state()) == orjson.dumps(steady.to_state())


def test_batching_does_not_change_the_state(case):
    events = case.events(case.short, 2)
    whole, split = case.make(), case.make()
    case.run(whole, events, case.short, [])
    case.run(split, events, case.short, cuts_for(case.short, 3))
    assert orjson.dumps(split.to_state()) == orjson.dumps(whole.to_state())


def test_extreme_values_leave_a_loadable_state(case):
    if case.extreme is None:
        pytest.skip(f"{case.name} takes no numbers from its input")
    events = case.events(case.short, 4)
    half = case.short // 2
    steady, restarted = case.make(), case.make()
    for obj in (steady, restarted):
        case.feed(obj, case.cut(events, 0, half))
        case.feed(obj, case.extreme())
    text = orjson.dumps(restarted.to_state())
    restarted = case.restore(orjson.loads(text))
    assert restarted.to_state() == orjson.loads(text)
    for obj in (steady, restarted):
        case.feed(obj, case.cut(events, half, case.short))
    assert orjson.dumps(restarted.to_state()) == orjson.dumps(steady.to_state())


# ------------------------------------------------------------------ size


def test_state_size_is_bounded_on_a_long_stream(case):
    short, long = case.make(), case.make()
    case.run(short, case.events(case.short, 5), case.short, [])
    events = case.events(case.long, 5)
    case.run(long, events, case.long, list(range(5_000, case.long, 5_000)))
    small = len(orjson.dumps(short.to_state()))
    large = len(orjson.dumps(long.to_state()))
    assert large <= small + case.growth + 64, (small, large)
    if isinstance(long, ModelMonitor):
        assert large <= MONITOR_LIMIT, large


# -------------------------------------------------------------- refusals


def matches(path: tuple[Any, ...], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(dotted(path), pattern) for pattern in patterns)


def damages(case: Stateful, state: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(what, damaged state, the key path its error must name) for every field."""
    for path, value in walk(state):
        if matches(path, case.skip):
            continue
        if isinstance(value, dict):
            yield from _damaged_mapping(case, state, path, value)
        elif isinstance(value, bool):
            yield "int for flag", edited(state, path, int(value)), dotted(path)
        elif isinstance(value, int):
            yield "bool for count", edited(state, path, True), dotted(path)
            yield "float for count", edited(state, path, value + 0.5), dotted(path)
            if not matches(path, case.signed):
                yield "negative count", edited(state, path, -1), dotted(path)
        elif isinstance(value, float):
            for bad in (float("nan"), float("inf"), float("-inf"), True, "1.0"):
                yield f"{bad!r} for number", edited(state, path, bad), dotted(path)


def _damaged_mapping(
    case: Stateful, state: Any, path: tuple[Any, ...], value: dict[str, Any]
) -> Iterator[tuple[str, Any, str]]:
    if path:
        yield "list for mapping", edited(state, path, []), dotted(path)
    if matches(path, case.data_maps):
        return
    for key in value:
        yield "missing key", edited(state, (*path, key), delete=True), dotted((*path, key))
    surplus = (*path, "surplus")
    yield "unknown key", edited(state, surplus, 0), dotted(surplus)
    if "kind" in value:
        kind = (*path, "kind")
        yield "other kind", edited(state, kind, "nonsense"), dotted(kind)
        version = (*path, "version")
        yield "other version", edited(state, version, value["version"] + 1), dotted(version)
        yield "version as bool", edited(state, version, True), dotted(version)


def test_every_damaged_field_is_refused_naming_its_key_path(case):
    state = fed_state(case.name)
    checked, wrong = 0, []
    for what, damaged, key_path in damages(case, state):
        checked += 1
        try:
            case.restore(damaged)
        except ValueError as err:
            if f"'{key_path}'" not in str(err):
                wrong.append(f"{what} at {key_path!r}: message {err}")
        else:
            wrong.append(f"{what} at {key_path!r}: accepted")
    assert not wrong, "\n".join(wrong[:20])
    assert checked > 10


@pytest.mark.parametrize("bad", [None, [], "state", 1.0])
def test_a_state_that_is_not_a_mapping_is_refused(case, bad):
    with pytest.raises(ValueError, match=r"mapping|'kind'"):
        case.restore(bad)


def test_every_kind_of_damage_is_exercised():
    """The registry as a whole must meet every refusal the contract names."""
    seen = set()
    for case in STATEFUL:
        seen |= {what for what, _, _ in damages(case, fed_state(case.name))}
    required = {
        "nan for number",
        "inf for number",
        "True for number",
        "bool for count",
        "negative count",
        "int for flag",
        "missing key",
        "unknown key",
        "other kind",
        "other version",
    }
    assert required <= seen, required - seen


def test_monitor_error_names_the_nested_key_path():
    state = fed_state("monitor-count")
    damaged = edited(state, ("features", "amount", "sketch", "sumsq"), None)
    with pytest.raises(ValueError) as err:
        ModelMonitor.from_state(monitor_settings("count"), baseline(), damaged)
    expected = "monitor state key 'features.amount.sketch.sumsq' must be a finite number, got None"
    assert str(err.value) == expected


@pytest.mark.parametrize("cls", [ADWIN, PageHinkley])
@pytest.mark.parametrize("bad", [1.7e308, -1e101])
def test_detectors_refuse_values_beyond_their_input_limit(cls, bad):
    # Squared deviations of such values would overflow and leave a state JSON cannot hold.
    detector = cls()
    detector.update_many(np.zeros(50))
    before = detector.to_state()
    with pytest.raises(ValueError, match=r"within ±1e\+100.*position 1"):
        detector.update_many([0.0, bad])
    with pytest.raises(ValueError, match=r"within ±1e\+100"):
        detector.update(bad)
    assert detector.to_state() == before
