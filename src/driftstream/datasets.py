"""Read training data files into the columns a baseline profile is built from.

Supported files, chosen by extension: CSV (``.csv``), Parquet (``.parquet``,
``.pq``) and JSON lines (``.jsonl``, ``.ndjson``, ``.json``, one object per
line). Columns come out in the shapes :func:`driftstream.core.baseline.build_profile`
infers kinds from:

* integer, float and decimal columns: float64 arrays, NaN for nulls;
* bool columns: object arrays of ``True``/``False``/``None``;
* string, dictionary, date and time columns: object arrays of ``str``/``None``;
* all-null columns: object arrays of ``None``.

Nested columns (lists, structs, maps) are refused. In CSV files an empty
field is a null in every column, strings included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from driftstream.core.baseline import BaselineError, BaselineProfile, build_profile


def _read_csv(path: Path) -> pa.Table:
    # Without this an empty CSV field in a string column is "" rather than null.
    options = pa_csv.ConvertOptions(strings_can_be_null=True)
    return pa_csv.read_csv(str(path), convert_options=options)


def _read_parquet(path: Path) -> pa.Table:
    return pq.read_table(str(path))


def _read_json_lines(path: Path) -> pa.Table:
    return pa_json.read_json(str(path))


_READERS: dict[str, Callable[[Path], pa.Table]] = {
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
    ".jsonl": _read_json_lines,
    ".ndjson": _read_json_lines,
    ".json": _read_json_lines,
}
SUPPORTED_EXTENSIONS = tuple(_READERS)


def read_table(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Read a training data file into numpy columns, in file order."""
    path = Path(path)
    reader = _reader_for(path)
    _check_exists(path)
    try:
        table = reader(path)
    except (pa.ArrowException, OSError) as exc:
        msg = f"cannot read training data file {str(path)!r}: {exc}"
        raise BaselineError(msg) from exc
    _check_unique_names(table.column_names, path)
    return {
        name: _to_numpy(name, table.column(i), path) for i, name in enumerate(table.column_names)
    }


def build_profile_from_file(
    path: str | Path,
    *,
    model_id: str,
    target: str | None = None,
    prediction: str | None = None,
    score: str | None = None,
    kinds: Mapping[str, str] | None = None,
    bins: int = 20,
    top_k: int = 50,
    task: str | None = None,
    positive: str | None = None,
    created_at: float | None = None,
) -> BaselineProfile:
    """Read ``path`` and build its baseline; ``created_from`` is the file name.

    ``created_at`` (epoch seconds) is recorded as given: the caller reads the clock.
    """
    path = Path(path)
    columns = read_table(path)
    try:
        return build_profile(
            columns,
            model_id=model_id,
            target=target,
            prediction=prediction,
            score=score,
            kinds=kinds,
            bins=bins,
            top_k=top_k,
            created_from=path.name,
            created_at=created_at,
            task=task,
            positive=positive,
        )
    except BaselineError as exc:
        msg = f"{path.name}: {exc}"
        raise BaselineError(msg) from exc


def _reader_for(path: Path) -> Callable[[Path], pa.Table]:
    extension = path.suffix.lower()
    if extension not in _READERS:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        msg = (
            f"training data file {str(path)!r} has unsupported extension "
            f"{extension or '(none)'!r}; supported: {supported}"
        )
        raise BaselineError(msg)
    return _READERS[extension]


def _check_exists(path: Path) -> None:
    if not path.exists():
        msg = f"training data file not found: {str(path)!r}"
        raise FileNotFoundError(msg)
    if not path.is_file():
        msg = f"training data path is not a file: {str(path)!r}"
        raise BaselineError(msg)


def _check_unique_names(names: list[str], path: Path) -> None:
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        msg = f"training data file {str(path)!r} has column {repeated[0]!r} more than once"
        raise BaselineError(msg)


def _to_numpy(name: str, column: pa.ChunkedArray, path: Path) -> npt.NDArray[Any]:
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _to_numpy(name, _decode(column), path)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _floats(column)
    if pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return _objects(column)
    if pa.types.is_nested(kind):
        msg = f"column {name!r} in {str(path)!r} has nested type {kind}, which cannot be profiled"
        raise BaselineError(msg)
    try:
        return _objects(column.cast(pa.string()))
    except pa.ArrowException as exc:
        msg = f"column {name!r} in {str(path)!r} has type {kind}, which cannot be read as text"
        raise BaselineError(msg) from exc


def _decode(column: pa.ChunkedArray) -> pa.ChunkedArray:
    chunks = [chunk.dictionary_decode() for chunk in column.chunks]
    return pa.chunked_array(chunks, type=column.type.value_type)


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    # Unsafe cast: ints beyond 2**53 round to the nearest float rather than fail.
    floats = pc.cast(column, pa.float64(), safe=False)
    filled = pc.fill_null(floats, float("nan"))
    return np.asarray(filled.to_numpy(), dtype=np.float64)


def _objects(column: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    values = np.empty(len(column), dtype=object)
    values[:] = column.to_pylist()
    return values
