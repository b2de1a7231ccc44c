"""Replay speed against the live worker, and what a sweep costs against single replays.

One run, on the embedded broker and a real Redis, over one topic of the
reference events of ``bench_runtime.py`` (10 numeric + 2 categorical
features + a score), every monitor on, ``routing: by_key``, no labels:

- **live**: the worker end to end with Redis commits, exactly the
  ``driftstream`` pipeline of ``bench_runtime.py``; events/s after the
  group join;
- **replay, topic range**: ``driftstream replay`` of the same topic (its
  features and labels topics exist but are empty), state in memory;
  events / wall seconds of the whole ``replay()`` call: config, source,
  workers, the read and the run, summary, alerts and timeline written
  (no HTML report). The summary's own ``records_per_second``, which times
  the read-and-run loop only, is shown beside it;
- **replay, .jsonl / .jsonl.gz**: the same over a file export of that
  topic (``driftstream export``, written once before the timed part);
- **sweep**: ``--set models.<model>.detectors.page_hinkley.threshold=`` with
  k values over the .jsonl export, against k single replays of the same
  file, one per value: the input is read and decoded once for the sweep,
  so it should cost well under k single replays.

The replays must give the live worker's throughput at least: "vs live" is
each rate over the live rate measured in the same round order. Alongside,
the run checks that the topic and both files raise the same alerts, and
that each sweep setting raises the alerts of its single replay.

    python bench/bench_replay.py [--events 200000] [--rounds 3] [--k 4]

The last line is JSON with the figures. Not a test: these machines are
shared, so compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

import bench_runtime
from driftstream.config import load_config
from driftstream.core.baseline import build_profile
from driftstream.replay.engine import SettingRun
from driftstream.replay.run import ReplayOptions, replay
from driftstream.replay.sources import export, topic_source
from driftstream.runtime.app import create_topics
from driftstream.runtime.services import kafka_service, redis_service
from driftstream.synthetic import REFERENCE_MODEL_ID, reference_frame

SWEEP_KEY = f"models.{REFERENCE_MODEL_ID}.detectors.page_hinkley.threshold"
SWEEP_STEP = 25  # thresholds 25, 50, 75, ...: the default (75) among them
EXPORTS = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Output:
    """What one setting produced: its alert ids, and its timeline's rows and digest."""

    alert_ids: tuple[str, ...]
    rows: int
    digest: str


@dataclass
class Replayed:
    """One timed replay: wall seconds, the summary's loop rate, each setting's output."""

    seconds: float
    loop_rate: float
    outputs: list[Output]


def write_config(folder: Path, bootstrap: str, redis_url: str, topic: str, batch: int) -> Path:
    """A config file with the live case's settings, topics and baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    # The baseline bench_runtime.driftstream builds when no labels flow.
    profile = build_profile(
        reference_frame(20_000, seed=1),
        model_id=REFERENCE_MODEL_ID,
        prediction="prediction",
        score="score",
    )
    (folder / "baseline.json").write_bytes(profile.to_json())
    raw = bench_runtime.document(
        {"baseline": "baseline.json"}, bootstrap, redis_url, topic, batch, name="bench-replay"
    )
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    # The features and labels topics exist and are empty, as in the live case:
    # the topic replay reads all three input topics.
    create_topics(load_config(path))
    return path


def write_exports(config: Path, folder: Path, n: int, batch: int) -> dict[str, Path]:
    """The topic range saved once per file format, outside every timed part."""
    paths = {}
    for suffix in EXPORTS:
        path = folder / f"export{suffix}"
        count = export(topic_source(load_config(config), [], []), path, batch)
        if count != n:
            raise SystemExit(f"export {path.name}: {count:,} records, expected {n:,}")
        paths[suffix] = path
    return paths


def timed_replay(
    config: Path, out: Path, n: int, data: tuple[Path, ...] = (), sets: tuple[str, ...] = ()
) -> Replayed:
    """Wall time of one ``replay()`` call, as ``driftstream replay --quiet`` runs it."""
    shutil.rmtree(out, ignore_errors=True)
    options = ReplayOptions(config=config, out=out, data=data, sets=sets, quiet=True, report=False)
    started = time.perf_counter()
    outcome = replay(options)
    seconds = time.perf_counter() - started
    records = outcome.summary["input"]["records"]
    if records != n:
        raise SystemExit(f"replay read {records:,} records, expected {n:,}: {data or 'topics'}")
    result = Replayed(
        seconds, outcome.summary["records_per_second"] or 0.0, [output(r) for r in outcome.runs]
    )
    # Free one replay's workers and output before the next is timed.
    del outcome
    shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    return result


def output(run: SettingRun) -> Output:
    # The timeline too: the reference events raise few alerts at the default
    # settings, but every judged window is in the timeline.
    timeline = run.watch.timeline
    return Output(
        tuple(orjson.loads(blob)["alert_id"] for blob in run.alerts()),
        len(timeline),
        hashlib.sha256(orjson.dumps(timeline.columns)).hexdigest(),
    )


def sweep_values(k: int) -> list[int]:
    return [SWEEP_STEP * (i + 1) for i in range(k)]


def run_round(
    services: tuple[str, str],
    topic: str,
    config: Path,
    files: dict[str, Path],
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, Any]:
    """Every case once, in a fixed order; the rounds interleave them."""
    bootstrap, redis_url = services
    n = args.events
    live = bench_runtime.driftstream(bootstrap, redis_url, topic, n, args.batch, tmp / "live")
    gc.collect()
    out = tmp / "out"
    cases = {
        "topic": timed_replay(config, out, n),
        ".jsonl": timed_replay(config, out, n, (files[".jsonl"],)),
        ".jsonl.gz": timed_replay(config, out, n, (files[".jsonl.gz"],)),
    }
    values = sweep_values(args.k)
    singles = [
        timed_replay(config, out, n, (files[".jsonl"],), (f"{SWEEP_KEY}={v}",)) for v in values
    ]
    swept = timed_replay(
        config, out, n, (files[".jsonl"],), (f"{SWEEP_KEY}={','.join(map(str, values))}",)
    )
    return {"live": live, "cases": cases, "singles": singles, "sweep": swept}


def same_outputs(rounds: list[dict[str, Any]]) -> tuple[bool, bool]:
    """Topic and files give the same output; each sweep setting that of its single replay."""
    first = rounds[0]
    found = [case.outputs[0] for case in first["cases"].values()]
    sources_agree = all(each == found[0] for each in found)
    settings_agree = first["sweep"].outputs == [s.outputs[0] for s in first["singles"]]
    return sources_agree, settings_agree


def summarize(rounds: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Medians over rounds; the sweep's ratios are taken per round, then their median."""
    live = [r["live"] for r in rounds]
    rates = {name: [n / r["cases"][name].seconds for r in rounds] for name in rounds[0]["cases"]}
    loops = {name: [r["cases"][name].loop_rate for r in rounds] for name in rounds[0]["cases"]}
    sums = [sum(s.seconds for s in r["singles"]) for r in rounds]
    sweeps = [r["sweep"].seconds for r in rounds]
    k = len(rounds[0]["singles"])
    return {
        "live": live,
        "rates": rates,
        "loops": loops,
        "single": [total / k for total in sums],
        "sweep": sweeps,
        "sweep_vs_k_singles": [s / total for s, total in zip(sweeps, sums, strict=True)],
        "sweep_vs_single": [s / (total / k) for s, total in zip(sweeps, sums, strict=True)],
    }


def print_table(figures: dict[str, Any], args: argparse.Namespace, sizes: dict[str, int]) -> None:
    live = statistics.median(figures["live"])
    print(
        f"reference events: 10 numeric + 2 categorical features + score; {args.events:,} events, "
        f"batches of {args.batch:,}, median of {args.rounds} interleaved rounds"
    )
    print(
        f"exports: .jsonl {sizes['.jsonl'] / 1e6:.1f} MB, "
        f".jsonl.gz {sizes['.jsonl.gz'] / 1e6:.1f} MB"
    )
    print(f"{'pipeline':<46}{'events/s':>10}{'vs live':>9}{'in loop/s':>11}   rounds")
    rows = [("live: worker + Redis commits (after join)", figures["live"], None)]
    names = {
        "topic": "replay: topic range",
        ".jsonl": "replay: file export .jsonl",
        ".jsonl.gz": "replay: file export .jsonl.gz",
    }
    rows += [(label, figures["rates"][key], figures["loops"][key]) for key, label in names.items()]
    single = [args.events / s for s in figures["single"]]
    sweep = [args.events / s for s in figures["sweep"]]
    rows += [
        (f"replay .jsonl with one --set (mean of {args.k})", single, None),
        (f"sweep: {args.k} settings over .jsonl, read once", sweep, None),
    ]
    for name, runs, loop in rows:
        eps = statistics.median(runs)
        shown = f"{statistics.median(loop):>11,.0f}" if loop else f"{'':>11}"
        each = ", ".join(f"{r:,.0f}" for r in runs)
        print(f"{name:<46}{eps:>10,.0f}{eps / live:>8.2f}x{shown}   {each}")
    print(
        f"sweep of {args.k} settings: {statistics.median(figures['sweep']):.2f} s against "
        f"{statistics.median(figures['single']):.2f} s for one replay: "
        f"{statistics.median(figures['sweep_vs_k_singles']):.2f}x of {args.k} single replays, "
        f"{statistics.median(figures['sweep_vs_single']):.2f}x of one "
        f"(rounds: {', '.join(f'{r:.2f}' for r in figures['sweep_vs_k_singles'])})"
    )


def print_checks(first: dict[str, Any], agree: tuple[bool, bool], k: int) -> None:
    shown = first["cases"]["topic"].outputs[0]
    counts = ", ".join(str(len(o.alert_ids)) for o in first["sweep"].outputs)
    print(
        f"same alerts and timeline from the topic and both files: {'yes' if agree[0] else 'NO'} "
        f"({len(shown.alert_ids)} alerts, {shown.rows:,} timeline rows)"
    )
    print(
        f"each sweep setting gives its single replay's alerts and timeline: "
        f"{'yes' if agree[1] else 'NO'} ({counts} alerts at thresholds "
        f"{', '.join(map(str, sweep_values(k)))})"
    )


def as_json(
    figures: dict[str, Any],
    args: argparse.Namespace,
    sizes: dict[str, int],
    agree: tuple[bool, bool],
) -> str:
    live = statistics.median(figures["live"])
    found: dict[str, Any] = {
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
        "k": args.k,
        "live_events_per_s": round(live),
    }
    for key, name in (("topic", "topic"), (".jsonl", "jsonl"), (".jsonl.gz", "jsonl_gz")):
        rate = statistics.median(figures["rates"][key])
        found[f"replay_{name}_events_per_s"] = round(rate)
        found[f"replay_{name}_vs_live"] = round(rate / live, 3)
        found[f"replay_{name}_loop_records_per_s"] = round(statistics.median(figures["loops"][key]))
    found |= {
        "single_seconds": round(statistics.median(figures["single"]), 3),
        "sweep_seconds": round(statistics.median(figures["sweep"]), 3),
        "sweep_vs_k_singles": round(statistics.median(figures["sweep_vs_k_singles"]), 3),
        "sweep_vs_single": round(statistics.median(figures["sweep_vs_single"]), 3),
        "export_jsonl_bytes": sizes[".jsonl"],
        "export_jsonl_gz_bytes": sizes[".jsonl.gz"],
        "same_output_topic_and_files": agree[0],
        "same_output_sweep_and_singles": agree[1],
    }
    return json.dumps(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every case, interleaved; medians count (default: 3)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=20_000,
        help="micro-batch size, live and replayed (default: 20000, as the config's default)",
    )
    parser.add_argument("--k", type=int, default=4, help="settings in the sweep (default: 4)")
    args = parser.parse_args()
    with (
        kafka_service(os.environ) as bootstrap,
        redis_service(os.environ) as redis_url,
        tempfile.TemporaryDirectory() as name,
    ):
        tmp = Path(name)
        (tmp / "live").mkdir()  # where the live case writes its baseline
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        print(f"producing {args.events:,} reference events ...", file=sys.stderr)
        bench_runtime.produce(bootstrap, topic, bench_runtime.make_events(args.events))
        config = write_config(tmp / "replay", bootstrap, redis_url, topic, args.batch)
        print("exporting the topic to .jsonl and .jsonl.gz ...", file=sys.stderr)
        files = write_exports(config, tmp / "replay", args.events, args.batch)
        sizes = {suffix: path.stat().st_size for suffix, path in files.items()}
        rounds = []
        for number in range(1, args.rounds + 1):
            print(f"round {number}/{args.rounds} ...", file=sys.stderr)
            rounds.append(run_round((bootstrap, redis_url), topic, config, files, args, tmp))
    figures = summarize(rounds, args.events)
    agree = same_outputs(rounds)
    print_table(figures, args, sizes)
    print_checks(rounds[0], agree, args.k)
    print(as_json(figures, args, sizes, agree))


if __name__ == "__main__":
    main()
