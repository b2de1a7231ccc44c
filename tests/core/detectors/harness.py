"""Checks shared by the detector tests: splits, save/restore, river's detections."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson


def feed_in_random_splits(
    detector: Any, values: np.ndarray, rng: np.random.Generator, sizes: Sequence[int]
) -> list[int]:
    """Detections when ``values`` arrive in random chunks, some through ``update``."""
    hits, pos = [], 0
    while pos < values.size:
        size = int(rng.choice(sizes))
        chunk = values[pos : pos + size]
        if size == 1 and rng.random() < 0.5:
            if detector.update(chunk[0]).drift_detected:
                hits.append(pos)
        else:
            hits.extend((detector.update_many(chunk) + pos).tolist())
        pos += chunk.size
    return hits


def check_restore(
    cls: Any, case: Any, codec: str, cut_at: Callable[[np.ndarray, list[int]], int]
) -> None:
    """Save at ``cut_at``, restore through ``codec``, continue: same as never stopping."""
    values = case.values()
    whole = cls(**case.params)
    expected = whole.update_many(values).tolist()
    cut = cut_at(values, expected)
    first = cls(**case.params)
    hits = first.update_many(values[:cut]).tolist()
    restored = cls.from_state(round_trip(first.to_state(), codec))
    hits += (restored.update_many(values[cut:]) + cut).tolist()
    assert hits == expected
    assert restored.to_state() == whole.to_state()


def round_trip(state: dict[str, Any], codec: str) -> dict[str, Any]:
    if codec == "json":
        return json.loads(json.dumps(state, allow_nan=False))
    return orjson.loads(orjson.dumps(state))


def river_positions(cls: type, values: np.ndarray, params: dict[str, Any]) -> list[int]:
    """Where river's detector ``cls`` with ``params`` fires on ``values``, one at a time."""
    detector = cls(**params)
    hits = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            hits.append(i)
    return hits


def assert_identical(
    bank_hits: list[np.ndarray],
    banked: list[Any],
    loop_hits: list[np.ndarray],
    looped: list[Any],
) -> None:
    """Same positions, same dtype, same state, to the bit (``repr`` tells -0.0 from 0.0)."""
    assert len(bank_hits) == len(loop_hits) == len(banked) == len(looped)
    for i, (got, want, ours, theirs) in enumerate(
        zip(bank_hits, loop_hits, banked, looped, strict=True)
    ):
        assert got.dtype == want.dtype == np.int64, i
        assert got.tolist() == want.tolist(), i
        assert ours.to_state() == theirs.to_state(), i
        assert repr(ours.to_state()) == repr(theirs.to_state()), i
