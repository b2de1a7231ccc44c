"""The ``driftstream`` command line.

Each subcommand is a small function over parsed arguments; errors that a
user can fix (a bad config key, a missing column, an unreadable file) print
one clear line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from driftstream import __version__
from driftstream.config import (
    ConfigError,
    feature_kinds,
    load_config,
    monitor_settings,
    read_baseline,
)
from driftstream.core.baseline import BaselineError, BaselineProfile, NumericProfile
from driftstream.datasets import build_profile_from_file

USER_ERROR = 2


class UsageError(Exception):
    """A problem the user can fix by changing the command or its inputs."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except (UsageError, ConfigError, BaselineError, FileNotFoundError) as error:
        print(f"driftstream: error: {error}", file=sys.stderr)
        return USER_ERROR
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftstream",
        description=(
            "Kafka-native drift detection for machine-learning models. "
            "Build a baseline from training data, validate a config, and "
            "watch live inference traffic for drift."
        ),
    )
    parser.add_argument("--version", action="version", version=f"driftstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_baseline(commands)
    _add_validate_config(commands)
    return parser


def _add_baseline(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "baseline",
        help="build a baseline profile from training data",
        description=(
            "Profile training data into a versioned JSON baseline: quantile bins for "
            "numeric features, top-K frequencies for categorical ones, null rates, and "
            "the prediction/score distribution. Live traffic is compared with it."
        ),
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="training data: .csv, .parquet or .jsonl"
    )
    parser.add_argument("--model-id", required=True, help="the model_id events carry")
    parser.add_argument("--out", required=True, type=Path, help="where to write the JSON")
    parser.add_argument("--target", help="ground-truth column (profiled, not a feature)")
    parser.add_argument("--prediction", help="the model's prediction column")
    parser.add_argument("--score", help="the model's numeric score column")
    parser.add_argument(
        "--bins", type=int, default=20, help="quantile bins per numeric feature (default: 20)"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=50,
        help="categories kept per categorical feature (default: 50)",
    )
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COLUMN=KIND",
        help="force a column's kind (numeric or categorical); repeatable",
    )
    parser.add_argument(
        "--config", type=Path, help="take column kinds from this model's features in a config"
    )
    parser.set_defaults(handler=run_baseline)


def _add_validate_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate-config",
        help="check a config file and the baselines it names",
        description=(
            "Validate a YAML config: every key and value, every model's baseline file, "
            "and every feature override against its baseline. Exits 2 naming the bad key."
        ),
    )
    parser.add_argument("config", type=Path, help="the YAML config file")
    parser.set_defaults(handler=run_validate_config)


def run_baseline(args: argparse.Namespace) -> int:
    kinds = _parse_kinds(args.kind)
    if args.config is not None:
        config = load_config(args.config)
        model = config.models.get(args.model_id)
        if model is None:
            msg = f"{args.config}: no model {args.model_id!r} under models"
            raise UsageError(msg)
        kinds = {**feature_kinds(model), **kinds}
    print(f"reading {args.data} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    profile = build_profile_from_file(
        args.data,
        model_id=args.model_id,
        target=args.target,
        prediction=args.prediction,
        score=args.score,
        kinds=kinds,
        bins=args.bins,
        top_k=args.top_k,
    )
    elapsed = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(profile.to_json())
    print(_summary(profile))
    print(f"wrote {args.out} ({profile.n_rows} rows profiled in {elapsed:.1f} s)")
    return 0


def run_validate_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for model_id, model in config.models.items():
        baseline = read_baseline(model_id, model)
        settings = monitor_settings(model_id, model, baseline)
        watched = ", ".join(f.name for f in settings.features)
        print(f"{model_id}: {len(settings.features)} columns watched ({watched})")
    print(f"{args.config}: ok")
    return 0


def _parse_kinds(items: list[str]) -> dict[str, str]:
    kinds = {}
    for item in items:
        name, sep, kind = item.partition("=")
        if not sep or kind not in ("numeric", "categorical"):
            msg = f"--kind {item!r}: expected COLUMN=numeric or COLUMN=categorical"
            raise UsageError(msg)
        kinds[name] = kind
    return kinds


def _summary(profile: BaselineProfile) -> str:
    rows = [("column", "kind", "null rate", "bins/categories")]
    columns = dict(profile.features)
    for role in ("prediction", "score", "target"):
        value = getattr(profile, role)
        if value is not None:
            columns[f"({role}) {value.name}"] = value
    for name, column in columns.items():
        if isinstance(column, NumericProfile):
            kind, size = "numeric", f"{len(column.counts)} bins"
        else:
            kind, size = "categorical", f"{len(column.categories)} categories"
        rows.append((name, kind, f"{column.null_rate:.1%}", size))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


if __name__ == "__main__":
    raise SystemExit(main())
