import dataclasses
import datetime
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from driftstream.core.baseline import BaselineError, CategoricalProfile, NumericProfile
from driftstream.datasets import SUPPORTED_EXTENSIONS, build_profile_from_file, read_table

ROWS = 300


def training_table() -> pa.Table:
    rng = np.random.default_rng(11)
    age = rng.integers(18, 80, ROWS).tolist()
    income = np.round(rng.lognormal(10, 1, ROWS), 2).tolist()
    plan = rng.choice(["basic", "pro", "team", "edu"], ROWS).tolist()
    active = (rng.random(ROWS) < 0.4).tolist()
    for i in range(0, ROWS, 17):
        age[i], plan[i], active[i] = None, None, None
    for i in range(0, ROWS, 23):
        income[i] = None
    return pa.table(
        {
            "age": pa.array(age, pa.int64()),
            "income": pa.array(income, pa.float64()),
            "plan": pa.array(plan, pa.string()),
            "active": pa.array(active, pa.bool_()),
            "label": pa.array(rng.choice(["churn", "stay"], ROWS).tolist()),
            "proba": pa.array(rng.random(ROWS).round(6).tolist()),
        }
    )


def write_csv(table: pa.Table, path: Path) -> Path:
    pa_csv.write_csv(table, path)
    return path


def write_parquet(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def write_jsonl(table: pa.Table, path: Path) -> Path:
    lines = (json.dumps(row) for row in table.to_pylist())
    path.write_text("\n".join(lines) + "\n")
    return path


WRITERS = {"csv": write_csv, "parquet": write_parquet, "jsonl": write_jsonl}


@pytest.fixture(params=sorted(WRITERS))
def training_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    extension = request.param
    return WRITERS[extension](training_table(), tmp_path / f"train.{extension}")


def test_read_table_gives_numpy_columns_in_file_order(training_file: Path) -> None:
    columns = read_table(training_file)
    assert list(columns) == ["age", "income", "plan", "active", "label", "proba"]
    for name in ("age", "income", "proba"):
        assert columns[name].dtype == np.float64
    for name in ("plan", "active", "label"):
        assert columns[name].dtype == object
    assert np.isnan(columns["age"][0]) and np.isnan(columns["income"][0])
    assert columns["plan"][0] is None and columns["active"][0] is None
    assert {type(v) for v in columns["active"][1:17]} == {bool}
    assert {type(v) for v in columns["plan"][1:17]} == {str}


def test_read_values_match_what_was_written(training_file: Path) -> None:
    table = training_table()
    columns = read_table(training_file)
    expected_age = np.array(table["age"].to_pylist(), dtype=float)
    np.testing.assert_array_equal(columns["age"], expected_age)
    assert columns["plan"].tolist() == table["plan"].to_pylist()
    assert columns["active"].tolist() == table["active"].to_pylist()


def test_profile_from_each_format(training_file: Path) -> None:
    profile = build_profile_from_file(
        training_file, model_id="churn", target="label", score="proba", bins=10, top_k=3
    )
    assert profile.created_from == training_file.name
    assert profile.n_rows == ROWS
    age, plan, active = (profile.features[name] for name in ("age", "plan", "active"))
    assert isinstance(age, NumericProfile) and isinstance(plan, CategoricalProfile)
    assert isinstance(active, CategoricalProfile)
    assert age.null_count == len(range(0, ROWS, 17))
    assert sum(age.counts) == age.count
    assert len(plan.categories) == 3 and plan.other_count > 0
    assert set(active.categories) == {"true", "false"}
    assert isinstance(profile.target, CategoricalProfile)
    assert isinstance(profile.score, NumericProfile)


def test_csv_parquet_and_jsonl_give_equal_profiles(tmp_path: Path) -> None:
    table = training_table()
    profiles = [
        build_profile_from_file(
            write(table, tmp_path / f"train.{ext}"), model_id="m", target="label"
        )
        for ext, write in WRITERS.items()
    ]
    first, *others = (dataclasses.replace(p, created_from="") for p in profiles)
    assert all(other == first for other in others)
    assert [p.created_from for p in profiles] == ["train.csv", "train.parquet", "train.jsonl"]


def test_empty_csv_field_in_text_column_is_null(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,plan\n1,a\n2,\n3,b\n")
    assert read_table(path)["plan"].tolist() == ["a", None, "b"]


def test_extension_is_case_insensitive_and_pq_is_parquet(tmp_path: Path) -> None:
    csv_path = write_csv(pa.table({"x": [1.0, 2.0]}), tmp_path / "T.CSV")
    pq_path = write_parquet(pa.table({"x": [1.0, 2.0]}), tmp_path / "t.pq")
    assert read_table(csv_path)["x"].tolist() == [1.0, 2.0]
    assert read_table(pq_path)["x"].tolist() == [1.0, 2.0]


def test_other_arrow_types_are_converted(tmp_path: Path) -> None:
    table = pa.table(
        {
            "tier": pa.array(["gold", None, "gold"]).dictionary_encode(),
            "day": pa.array([datetime.date(2024, 1, 2), None, datetime.date(2024, 3, 4)]),
            "price": pa.array(["1.50", None, "2.25"]).cast(pa.decimal128(5, 2)),
            "small": pa.array([1, None, 3], pa.int8()),
            "empty": pa.nulls(3),
        }
    )
    columns = read_table(write_parquet(table, tmp_path / "t.parquet"))
    assert columns["tier"].tolist() == ["gold", None, "gold"]
    assert columns["day"].tolist() == ["2024-01-02", None, "2024-03-04"]
    np.testing.assert_array_equal(columns["price"], [1.5, np.nan, 2.25])
    np.testing.assert_array_equal(columns["small"], [1.0, np.nan, 3.0])
    assert columns["empty"].dtype == object and columns["empty"].tolist() == [None] * 3


def test_empty_file_reads_as_zero_rows(tmp_path: Path) -> None:
    path = write_parquet(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "t.parquet")
    columns = read_table(path)
    assert columns["x"].dtype == np.float64 and columns["x"].size == 0
    with pytest.raises(BaselineError, match=r"^t\.parquet: training data has no rows"):
        build_profile_from_file(path, model_id="m")


def test_build_errors_are_prefixed_with_the_file_name(tmp_path: Path) -> None:
    path = write_csv(pa.table({"x": [1.0, 2.0]}), tmp_path / "train.csv")
    with pytest.raises(BaselineError) as info:
        build_profile_from_file(path, model_id="m", target="y")
    assert str(info.value) == (
        "train.csv: target column 'y' is not in the training data (columns: 'x')"
    )


def test_unsupported_extension_lists_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"")
    with pytest.raises(BaselineError) as info:
        read_table(path)
    message = str(info.value)
    assert "'.xlsx'" in message
    assert all(extension in message for extension in SUPPORTED_EXTENSIONS)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"training data file not found: .*nope\.csv"):
        read_table(tmp_path / "nope.csv")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.parquet"
    folder.mkdir()
    with pytest.raises(BaselineError, match="is not a file"):
        read_table(folder)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.parquet", b"this is not parquet"),
        ("bad.jsonl", b'{"x": 1}\n{"x": \n'),
        ("bad.csv", b"x,y\n1,2\n3,4,5\n"),
    ],
)
def test_parse_errors_name_the_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BaselineError, match=f"cannot read training data file .*{re.escape(name)}"):
        read_table(path)


def test_nested_column_is_refused_by_name(tmp_path: Path) -> None:
    table = pa.table({"x": [1.0, 2.0], "tags": [["a"], ["b", "c"]]})
    path = write_parquet(table, tmp_path / "t.parquet")
    with pytest.raises(BaselineError, match=r"column 'tags' .* has nested type list"):
        read_table(path)


def test_repeated_column_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y,x\n1,2,3\n")
    with pytest.raises(BaselineError, match="has column 'x' more than once"):
        read_table(path)
