"""A micro-batch of one model's events as columns.

Numeric columns are float64 with NaN for a missing value; categorical
columns are object arrays of ``str`` with ``None`` for a missing value. The
model's prediction and score travel as the pseudo-features ``__prediction__``
and ``__score__``. A column absent from the batch counts as all-missing.

>>> batch = Batch.from_records(
...     [{"ts": 1.0, "features": {"x": 2.5, "c": "a"}, "prediction": "yes", "score": 0.9},
...      {"ts": 2.0, "features": {"x": None, "c": "b"}, "prediction": "no"}],
...     numeric=["x", "__score__"], categorical=["c", "__prediction__"])
>>> len(batch), batch.columns["x"].tolist(), batch.columns["__score__"].tolist()
(2, [2.5, nan], [0.9, nan])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.baseline import category_label
from driftstream.core.settings import PREDICTION, SCORE


@dataclass(frozen=True)
class Batch:
    """Event times plus one array per column, all of the same length."""

    ts: npt.NDArray[np.float64]
    columns: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        for name, column in self.columns.items():
            if len(column) != len(self.ts):
                msg = f"column {name!r} has {len(column)} rows, expected {len(self.ts)}"
                raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.ts)

    def numeric(self, name: str) -> npt.NDArray[np.float64]:
        column = self.columns.get(name)
        if column is None:
            return np.full(len(self), np.nan)
        return np.asarray(column, dtype=np.float64)

    def categorical(self, name: str) -> np.ndarray:
        column = self.columns.get(name)
        if column is None:
            return np.full(len(self), None, dtype=object)
        return np.asarray(column, dtype=object)

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(self.ts[start:stop], {k: v[start:stop] for k, v in self.columns.items()})

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        numeric: Iterable[str],
        categorical: Iterable[str],
    ) -> Batch:
        """Columns from decoded prediction events (for tests, replays and the SDK).

        The runtime builds columns straight from decoded messages; this is the
        simple path for code that already holds event dicts.
        """
        rows = [_flatten(record) for record in records]
        columns: dict[str, np.ndarray] = {}
        for name in numeric:
            values = [row.get(name) for row in rows]
            columns[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        for name in categorical:
            columns[name] = np.array([category_label(row.get(name)) for row in rows], dtype=object)
        ts = np.array([float(record["ts"]) for record in records], dtype=np.float64)
        return cls(ts, columns)


def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(record.get("features") or {})
    row[PREDICTION] = record.get("prediction")
    row[SCORE] = record.get("score")
    return row
