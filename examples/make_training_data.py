"""Write example training data (CSV and Parquet) for the fraud model.

python examples/make_training_data.py --out examples/data --rows 20000
"""

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet

from driftstream.synthetic import frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/data"))
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    table = pa.table(frame(args.rows, args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    pa.csv.write_csv(table, args.out / "train.csv")
    pa.parquet.write_table(table, args.out / "train.parquet")
    print(f"wrote {args.rows} rows to {args.out}/train.csv and {args.out}/train.parquet")


if __name__ == "__main__":
    main()
