"""Throughput of the Faust integration against the native worker, on the same events.

One run, on the embedded broker and a real Redis, over one topic (one
partition) of the reference events of ``bench_runtime.py`` (1 model, 10
numeric + 2 categorical features + a score, keyed by the model id), every
monitor on, state committed to Redis per batch. Pipelines:

- **floor**: confluent-kafka ``consume(n)`` plus ``orjson.loads`` of every
  value (``bench_runtime.floor``);
- **native**: ``driftstream run``'s worker end to end
  (``bench_runtime.driftstream``);
- **faust floor**: a faust-streaming agent that takes the topic in batches
  (``Stream.take_events``) and ``orjson.loads`` every value: Faust's own
  cost, what the integration cannot go below;
- **faust + driftstream**: ``driftstream.integrations.faust``: the same
  agent with each batch monitored and committed (``Monitors.batches``).

Every pipeline reads with the same batch size (``--batch``; Faust's
``take_events`` cuts a batch at ``kafka.batch_timeout_seconds`` too).
Rounds interleave the pipelines; medians count. Each measurement runs in a
fresh process, and no rate counts the first batch (the connection, the
group join and the first fetch come with it), so ``--events`` must exceed
``--batch``.

    python bench/bench_faust.py [--events 200000] [--batch 20000] [--rounds 3]

The last line is JSON with the figures. Not a test: these machines are
shared, so compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

import bench_runtime
from bench_runtime import REFERENCE, Measured, at_least, in_child
from driftstream.config import parse_config
from driftstream.runtime.app import create_topics
from driftstream.runtime.services import kafka_service, redis_service

TIMEOUT_SECONDS = 300.0


def faust_app(name: str, bootstrap: str, workdir: Path) -> Any:
    import faust

    # Tansu answers a group join after half the session timeout: with Faust's
    # default of 60 s each start would wait 30 s (not timed, but slow).
    return faust.App(
        f"{name}-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(workdir / "faust"),
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )


def run_timed(app: Any, n: int, marks: list[tuple[float, int]]) -> float:
    """Run ``app`` until its agent has marked ``n`` events; events/s after the first batch.

    ``marks`` gets (time, events handled so far) after each batch.
    """

    async def main() -> None:
        await app.start()
        try:
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while not marks or marks[-1][1] < n:
                if time.monotonic() > deadline:
                    seen = marks[-1][1] if marks else 0
                    raise SystemExit(f"{app.conf.id}: only {seen:,} of {n:,} events")
                await asyncio.sleep(0.05)
        finally:
            await app.stop()

    asyncio.run(main())
    (started, first), (ended, last) = marks[0], marks[-1]
    refused = bench_runtime.untimed(app.conf.id, first, n)
    if refused:
        raise SystemExit(refused)
    return (last - first) / (ended - started)


def faust_floor(bootstrap: str, topic: str, n: int, batch: int, workdir: Path) -> float:
    """Events/s of an agent that takes batches and decodes every value, nothing else."""
    app = faust_app("faust-floor", bootstrap, workdir)
    marks: list[tuple[float, int]] = []
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")

    @app.agent(source)
    async def decode(stream: Any) -> None:
        seen = 0
        async for events in stream.take_events(batch, within=0.5):
            for event in events:
                orjson.loads(event.message.value)
            seen += len(events)
            marks.append((time.perf_counter(), seen))

    return run_timed(app, n, marks)


def faust_driftstream(
    bootstrap: str,
    redis_url: str,
    topic: str,
    n: int,
    batch: int,
    workdir: Path,
    baselines: Mapping[str, Path],
) -> float:
    """Events/s of an agent feeding each batch through ``Monitors.batches``."""
    from driftstream.integrations.faust import Monitors

    raw = bench_runtime.document(
        {}, bootstrap, redis_url, topic, batch, name="faust-bench", baselines=baselines
    )
    config = parse_config(raw)
    create_topics(config)  # the alerts and dead-letter topics
    app = faust_app("faust-bench", bootstrap, workdir)
    monitors = Monitors(app, config)
    marks: list[tuple[float, int]] = []
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")

    @app.agent(source)
    async def monitored(stream: Any) -> None:
        async for _ in monitors.batches(stream):
            marks.append((time.perf_counter(), monitors.worker.processed))

    rate = run_timed(app, n, marks)
    invalid = sum(
        sample.value
        for metric in monitors.registry.collect()
        for sample in metric.samples
        if sample.name == "driftstream_invalid_events_total"
    )
    if invalid:
        raise SystemExit(f"faust: {invalid:,.0f} records were dead-lettered; none should be")
    return rate


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events",
        type=at_least(2),
        default=200_000,
        help="events on the topic; must exceed --batch (default: 200000)",
    )
    parser.add_argument(
        "--batch",
        type=at_least(1),
        default=20_000,
        help="events per batch, for every pipeline (default: 20000, the config's default)",
    )
    parser.add_argument(
        "--rounds",
        type=at_least(1),
        default=3,
        help="rounds of every pipeline, interleaved; medians count (default: 3)",
    )
    args = parser.parse_args()
    if args.events <= args.batch:
        parser.error(
            f"--events ({args.events:,}) must exceed --batch ({args.batch:,}): "
            "the first batch is not timed"
        )
    return args


ROWS = {
    "floor": "floor: confluent consume + orjson decode",
    "native": "native worker (driftstream run)",
    "faust_floor": "faust floor: take_events + orjson decode",
    "faust": "faust + driftstream (integrations.faust)",
}


def measure(
    args: argparse.Namespace, bootstrap: str, redis_url: str, tmp: Path
) -> dict[str, list[Measured]]:
    n, batch = args.events, args.batch
    topic = f"bench-faust-{uuid.uuid4().hex[:6]}"
    print(f"producing {n:,} events: {REFERENCE.describe()} ...", file=sys.stderr)
    bench_runtime.produce(bootstrap, topic, bench_runtime.make_events(n))
    baselines = bench_runtime.write_baselines(tmp / "baselines", REFERENCE, labels=False)
    pipelines: dict[str, Callable[[], Measured]] = {
        "floor": lambda: in_child(bench_runtime.floor, bootstrap, topic, n, batch),
        "native": lambda: in_child(
            bench_runtime.driftstream,
            bootstrap,
            redis_url,
            topic,
            n,
            batch,
            tmp,
            baselines=baselines,
        ),
        "faust_floor": lambda: in_child(faust_floor, bootstrap, topic, n, batch, tmp),
        "faust": lambda: in_child(
            faust_driftstream, bootstrap, redis_url, topic, n, batch, tmp, baselines
        ),
    }
    runs: dict[str, list[Measured]] = {name: [] for name in pipelines}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds} ...", file=sys.stderr)
        for name, run in pipelines.items():
            runs[name].append(run())
    return runs


def report(args: argparse.Namespace, runs: dict[str, list[Measured]]) -> None:
    rate = {name: statistics.median(m.events_per_s for m in each) for name, each in runs.items()}
    peak = {name: max(m.peak_rss_mib for m in each) for name, each in runs.items()}
    print(
        f"workload: {REFERENCE.describe()}; {args.events:,} events, batches of "
        f"{args.batch:,}, median of {args.rounds} round{'' if args.rounds == 1 else 's'}, "
        "each pipeline in a fresh process"
    )
    print(f"{'pipeline':<44}{'events/s':>12}{'vs native':>11}{'peak RSS MiB':>14}   rounds")
    for name, each in runs.items():
        rounds = ", ".join(f"{m.events_per_s:,.0f}" for m in each)
        print(
            f"{ROWS[name]:<44}{rate[name]:>12,.0f}{rate[name] / rate['native']:>10.2f}x"
            f"{peak[name]:>14.1f}   {rounds}"
        )
    print(
        f"faust + driftstream vs native: {rate['faust'] / rate['native']:.2f}x; "
        f"vs the faust floor: {rate['faust'] / rate['faust_floor']:.2f}x"
    )
    found: dict[str, Any] = {"events": args.events, "batch": args.batch, "rounds": args.rounds}
    for name in runs:
        found[f"{name}_events_per_s"] = round(rate[name])
        found[f"{name}_peak_rss_mib"] = round(peak[name], 1)
    found["faust_vs_native"] = round(rate["faust"] / rate["native"], 3)
    found["faust_vs_faust_floor"] = round(rate["faust"] / rate["faust_floor"], 3)
    found["native_vs_floor"] = round(rate["native"] / rate["floor"], 3)
    print(json.dumps(found))


def main() -> None:
    args = arguments()
    with (
        kafka_service(os.environ) as bootstrap,
        redis_service(os.environ) as redis_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runs = measure(args, bootstrap, redis_url, Path(tmp))
    report(args, runs)


if __name__ == "__main__":
    main()
