"""The ``driftstream`` command line.

Each subcommand is a small function over parsed arguments; errors that a
user can fix (a bad config key, a missing column, an unreadable file) print
one clear line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftstream import __version__
from driftstream.config import (
    Config,
    ConfigError,
    check_client_settings,
    check_redis_url,
    feature_kinds,
    load_config,
    monitor_settings,
    read_baseline,
)
from driftstream.core.baseline import BaselineError, BaselineProfile, NumericProfile
from driftstream.datasets import build_profile_from_file

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from driftstream.runtime.health import Health
    from driftstream.runtime.metrics import Server

USER_ERROR = 2
SERVICE_ERROR = 1
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(Exception):
    """A problem the user can fix by changing the command or its inputs."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported here so `driftstream --help` and `baseline` stay quick.
    from driftstream.runtime.logs import configure
    from driftstream.runtime.services import ServiceError

    configure(args.log_level or args.default_log_level, args.log_format)
    try:
        result: int = args.handler(args)
    except (UsageError, ConfigError, BaselineError, FileNotFoundError) as error:
        print(f"driftstream: error: {error}", file=sys.stderr)
        return USER_ERROR
    except ServiceError as error:
        print(f"driftstream: error: {error}", file=sys.stderr)
        return SERVICE_ERROR
    except KeyboardInterrupt:
        print("driftstream: interrupted", file=sys.stderr)
        return INTERRUPTED
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
    _add_log_options(parser, default=None)
    parser.set_defaults(default_log_level="INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_demo(commands)
    _add_replay(commands)
    _add_export(commands)
    _add_baseline(commands)
    _add_validate_config(commands)
    _add_topics(commands)
    _add_traffic(commands)
    _add_services(commands)
    return parser


def _add_log_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--log-format and --log-level, before the command or (``default`` SUPPRESS) after it."""
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text" if default is None else default,
        help="log lines as text, or as JSON objects for log shippers (default: text)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        help="log verbosity (default: INFO; WARNING for demo and replay)",
    )


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the stream processor (long-running worker)",
        description=(
            "Consume inference events from Kafka in micro-batches, update every model's "
            "monitors, commit state, offsets and alerts atomically to Redis, and publish "
            "alerts. SIGTERM or Ctrl-C finishes the current batch, commits and leaves "
            "the consumer group cleanly. Start more workers with the same config to scale."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML config file")
    _add_log_options(parser, default=argparse.SUPPRESS)
    parser.set_defaults(handler=run_worker)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="the whole pipeline on embedded Kafka and Redis, with an injected drift",
        description=(
            "Start an embedded Kafka-compatible broker (Tansu) and Redis, build a baseline "
            "from generated training data, produce synthetic traffic for a fraud model with "
            "drift injected into some features at a known event, run the worker, and print "
            "the alerts read back from the alerts topic. Needs no services set up. "
            "DRIFTSTREAM_KAFKA_BOOTSTRAP / DRIFTSTREAM_REDIS_URL use running services instead."
        ),
    )
    parser.add_argument(
        "--events", type=int, default=60_000, help="events to produce (default: 60000)"
    )
    parser.add_argument(
        "--drift-at",
        type=int,
        default=None,
        help="index of the first drifted event (default: half of --events)",
    )
    parser.add_argument(
        "--concept-at",
        type=int,
        default=None,
        help=(
            "index of the first event whose label follows a new relationship to the features "
            "(a concept drift; default: two thirds of --drift-at)"
        ),
    )
    parser.add_argument(
        "--no-labels",
        action="store_true",
        help="produce no labels (no label join, no performance alerts)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--save",
        type=Path,
        metavar="DIR",
        help=(
            "also write the demo's records (events.jsonl.gz), config, baseline and known "
            "incidents to DIR, ready for `driftstream replay`"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each alert as published (one JSON line), then a summary line",
    )
    _add_log_options(parser, default=argparse.SUPPRESS)
    parser.set_defaults(handler=run_demo_command, default_log_level="WARNING")


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="backtest settings by replaying a topic range or a file export",
        description=(
            "Replay recorded events through the same decode, routing, monitors, label join "
            "and alert building as `driftstream run`, with state in memory (no Redis), and "
            "write alerts.jsonl (as published live, same alert ids), timeline.parquet (every "
            "judged window), summary.json and report.html into --out. With --incidents, "
            "score the alerts against known incidents: detection delay, misses, false alarms "
            "per day. With --set, sweep settings over the same input, read once."
        ),
        epilog=(
            "Input: --data FILE... (JSON lines, .jsonl or .jsonl.gz, one event per line; lines "
            "of an export keep their Kafka topic, partition and offset), or a range of the "
            "config's input topics with --from/--to (default: everything on the broker now). "
            "Example: driftstream replay --config driftstream.yaml --data march.jsonl.gz "
            "--incidents incidents.yaml --set models.fraud.detectors.page_hinkley.threshold="
            "25,50,100 --out backtest/"
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML config file")
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for the results (created if missing)"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="JSON-lines files to replay",
    )
    _add_range(parser)
    parser.add_argument(
        "--incidents",
        type=Path,
        help="YAML or JSON list of known incidents: {model_id, start, end?, features?, note?}",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help=(
            "sweep a config setting over values (repeatable; the cross product runs), e.g. "
            "models.fraud.window.size=500,1000"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="records per micro-batch (default: the config's kafka.batch_size)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on the terminal")
    _add_log_options(parser, default=argparse.SUPPRESS)
    parser.set_defaults(handler=run_replay_command, default_log_level="WARNING")


def run_replay_command(args: argparse.Namespace) -> int:
    from driftstream.replay.incidents import IncidentError
    from driftstream.replay.run import ReplayOptions, print_result, replay
    from driftstream.replay.sources import SourceError
    from driftstream.replay.sweep import SweepError

    if args.batch_size is not None and args.batch_size < 1:
        msg = f"--batch-size must be at least 1, got {args.batch_size}"
        raise UsageError(msg)
    options = ReplayOptions(
        config=args.config,
        out=args.out,
        data=args.data,
        start=args.start,
        end=args.end,
        incidents=args.incidents,
        sets=args.sets,
        batch_size=args.batch_size,
        quiet=args.quiet,
    )
    try:
        outcome = replay(options)
    except (SourceError, SweepError, IncidentError) as error:
        raise UsageError(str(error)) from None
    print_result(outcome, args.out)
    return 0


def _add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export",
        help="save a range of the input topics as a JSON-lines file to replay later",
        description=(
            "Read the config's input topics (predictions, features, labels) from --from to "
            "--to with a plain consumer that joins no group and commits nothing, and write "
            "one line per record that keeps its topic, partition, offset and key. "
            "`driftstream replay --data FILE` on it raises the alerts, with the same ids, "
            "that replaying the topics does."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML config file")
    parser.add_argument(
        "--out", required=True, type=Path, help="the file to write (.jsonl, or .jsonl.gz)"
    )
    _add_range(parser)
    parser.set_defaults(handler=run_export_command)


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="start",
        nargs="+",
        default=[],
        metavar="WHEN",
        help=(
            "start of the topic range: an RFC 3339 time (Kafka record timestamps, e.g. "
            "2026-03-01T00:00:00Z) or topic:partition:offset places (default: the beginning)"
        ),
    )
    parser.add_argument(
        "--to",
        dest="end",
        nargs="+",
        default=[],
        metavar="WHEN",
        help=(
            "end of the topic range, excluded; same forms (default: each partition's end "
            "when the read reaches it)"
        ),
    )


def run_export_command(args: argparse.Namespace) -> int:
    from driftstream.replay.sources import SourceError, export, topic_source

    config = load_config(args.config)
    try:
        source = topic_source(config, args.start, args.end)
    except SourceError as error:
        raise UsageError(str(error)) from None
    count = export(source, args.out, config.kafka.batch_size)
    print(f"wrote {count:,} records to {args.out} ({source.description})")
    return 0


def _add_topics(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("topics", help="manage driftstream's Kafka topics")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create the input (predictions, features, labels), alerts and dead-letter topics",
        description=(
            "Create the predictions, features, labels, alerts and dead-letter topics named in the "
            "config, with kafka.partitions partitions each (input topics must share one "
            "partition count: they are co-partitioned by model_id)."
        ),
    )
    create.add_argument("--config", required=True, type=Path, help="the YAML config file")
    create.set_defaults(handler=run_topics_create)


def _add_baseline(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "baseline",
        help="build a baseline profile from training data",
        description=(
            "Profile training data into a versioned JSON baseline: quantile bins for "
            "numeric features, top-K frequencies for categorical ones, null rates, and "
            "the prediction/score distribution. Live traffic is compared with it. The "
            "baseline records when it was built (created_at), for the model-age check."
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
        "--task",
        choices=("classification", "regression"),
        help=(
            "with --target and --prediction, the task whose metrics the baseline records "
            "(default: regression for a numeric target, else classification)"
        ),
    )
    parser.add_argument(
        "--positive",
        help=(
            "the positive class, for precision, recall, F1, ROC AUC, log loss, Brier and "
            "calibration (default: 1 or true when the target has two classes)"
        ),
    )
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
        epilog=(
            "Every command reads DRIFTSTREAM__* environment variables over the file's keys "
            "(DRIFTSTREAM__REDIS__PASSWORD sets redis.password; a librdkafka property's dots "
            "are single underscores: DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD), and a secret "
            "from a file as <key>_file (DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE). This "
            "command lists the keys the environment set, never their values."
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
        task=args.task,
        positive=args.positive,
        # The model-age check (quality.max_model_age_days) reads it.
        created_at=time.time(),
    )
    elapsed = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(profile.to_json())
    print(_summary(profile))
    if profile.performance is not None:
        print(_performance_summary(profile.performance))
    print(f"wrote {args.out} ({profile.n_rows} rows profiled in {elapsed:.1f} s)")
    return 0


def _performance_summary(performance: Any) -> str:
    values = performance.reference.values
    shown = ", ".join(f"{name} {value:.4g}" for name, value in values.items() if value == value)
    positive = "" if performance.positive is None else f", positive class {performance.positive!r}"
    return f"performance ({performance.task}{positive}): {shown}"


def run_validate_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_client_settings(config.kafka)
    check_redis_url(config.redis)
    for model_id, model in config.models.items():
        baseline = read_baseline(model_id, model)
        settings = monitor_settings(model_id, model, baseline)
        watched = ", ".join(f.name for f in settings.features)
        print(f"{model_id}: {len(settings.features)} columns watched ({watched})")
        if model.labels is not None:
            from driftstream.runtime.models import label_spec

            labels = label_spec(model_id, model.labels, baseline, settings)
            judged = "no baseline performance to judge against"
            if labels.reference is not None:
                judged = f"{len(labels.performance.judged_metrics())} metrics judged"
            print(f"{model_id}: labels joined ({labels.performance.task}; {judged})")
    from driftstream.config import environment_keys

    # Which keys the environment set, never their values.
    for key, variable in environment_keys(args.config, os.environ).items():
        print(f"{key}: set by {variable}")
    print(f"{args.config}: ok")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from driftstream.runtime.app import build_worker
    from driftstream.runtime.health import Health, liveness_seconds, probes_for
    from driftstream.runtime.metrics import serve

    log = logging.getLogger("driftstream")
    config = load_config(args.config)
    registry = CollectorRegistry()
    health = Health(liveness_seconds(config), probes_for(config))
    worker = build_worker(config, registry, health)
    server = None
    if config.metrics.port:
        server = _serve_metrics(serve, registry, config, health)
        base = server.url.removesuffix("/metrics")
        log.info("metrics on %s/metrics, health on %s/healthz and %s/readyz", base, base, base)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    topics = config.kafka.topics
    log.info(
        "consuming %s and %s as group %s; alerts to %s",
        topics.predictions,
        topics.features,
        config.kafka.group_id,
        topics.alerts,
    )
    try:
        clean = worker.run(stop)
    finally:
        if server is not None:
            server.close()
    if not clean:
        from driftstream.runtime.worker import EXIT_UNCOMMITTED

        return EXIT_UNCOMMITTED
    log.info("stopped cleanly after %d events", worker.processed)
    return 0


def _serve_metrics(
    serve: Callable[[CollectorRegistry, str, int, Health], Server],
    registry: CollectorRegistry,
    config: Config,
    health: Health,
) -> Server:
    """Start the metrics and health endpoint, or say in one line why it cannot start."""
    from driftstream.runtime.services import ServiceError

    host, port = config.metrics.host, config.metrics.port
    try:
        return serve(registry, host, port, health)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            msg = (
                f"metrics.port {port} on {host} is in use by another process: stop it, "
                "choose another metrics.port, or set metrics.port to 0 to turn metrics off"
            )
        else:
            why = error.strerror or str(error)
            msg = f"metrics.host/metrics.port: {why} (set metrics.port to 0 to turn metrics off)"
        raise ServiceError(msg) from None


def run_demo_command(args: argparse.Namespace) -> int:
    from driftstream.demo import run_demo

    drift_at = args.events // 2 if args.drift_at is None else args.drift_at
    if args.events < 1 or not 0 <= drift_at <= args.events:
        msg = f"--drift-at {drift_at} must lie between 0 and --events {args.events}"
        raise UsageError(msg)
    concept_at = drift_at * 2 // 3 if args.concept_at is None else args.concept_at
    if not 0 <= concept_at <= args.events:
        msg = f"--concept-at {concept_at} must lie between 0 and --events {args.events}"
        raise UsageError(msg)
    labels = None if args.no_labels else concept_at
    _interrupt_on_termination()  # so the embedded services stop and their folders go
    return run_demo(
        args.events, drift_at, args.seed, args.json, os.environ, concept_at=labels, save=args.save
    )


def run_topics_create(args: argparse.Namespace) -> int:
    from driftstream.runtime.app import check_kafka, create_topics

    config = load_config(args.config)
    check_kafka(config)
    outcome = create_topics(config)
    for topic, result in outcome.items():
        print(f"{topic}: {result}")
    return 1 if any(r.startswith("failed") for r in outcome.values()) else 0


def _add_traffic(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "traffic",
        help="produce the demo's synthetic traffic to a running Kafka (for trying a deployment)",
        description=(
            "Produce prediction events from the demo's fraud generator to the config's "
            "predictions topic at a steady rate (event time: now), for every model of the config "
            "or those given with --model, with a drift of amount, latency_ms and country from "
            "event --drift-at on. Models with a labels section also get labels, after a random "
            "delay; a tenth never come. SIGTERM or Ctrl-C stops it cleanly. "
            "--write-baselines instead writes each model's baseline, profiled from the same "
            "generator's training data, to the path the config names (existing files are kept)."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML config file")
    parser.add_argument(
        "--events", type=int, default=0, help="prediction events to send (default: 0, no end)"
    )
    parser.add_argument(
        "--rate", type=float, default=100.0, help="events per second, all models (default: 100)"
    )
    parser.add_argument(
        "--drift-at",
        type=int,
        default=None,
        help="index of the first drifted event (default: half of --events; none with no end)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="a model of the config to produce for; repeatable (default: every model)",
    )
    parser.add_argument("--no-labels", action="store_true", help="send no labels")
    parser.add_argument(
        "--label-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="mean delay from a prediction to its label (default: 30)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--write-baselines",
        action="store_true",
        help="write the models' baselines where the config names them, then exit",
    )
    parser.set_defaults(handler=run_traffic_command)


def run_traffic_command(args: argparse.Namespace) -> int:
    from driftstream.traffic import run_traffic

    if args.events < 0:
        msg = f"--events must be 0 (no end) or more, got {args.events}"
        raise UsageError(msg)
    if not 0 < args.rate < float("inf"):
        msg = f"--rate must be a positive number of events per second, got {args.rate}"
        raise UsageError(msg)
    if not 0 <= args.label_delay < float("inf"):
        msg = f"--label-delay must be 0 or more seconds, got {args.label_delay}"
        raise UsageError(msg)
    drift_at = args.drift_at
    if drift_at is None and args.events:
        drift_at = args.events // 2
    if drift_at is not None and drift_at < 0:
        msg = f"--drift-at must be 0 or more, got {drift_at}"
        raise UsageError(msg)
    return run_traffic(
        args.config,
        args.events,
        args.rate,
        drift_at,
        args.model,
        labels=not args.no_labels,
        label_delay=args.label_delay,
        seed=args.seed,
        baselines_only=args.write_baselines,
        out=sys.stdout,
        err=sys.stderr,
    )


def _add_services(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "services",
        help="start an embedded Kafka-compatible broker and Redis for development",
        description=(
            "Start an embedded Kafka-compatible broker (Tansu, topics in memory) and a private "
            "Redis (nothing on disk) on loopback ports, print their addresses and the config "
            "keys `driftstream run --config` needs to use them, and keep them up until Ctrl-C "
            "or SIGTERM; then stop both and remove their temporary folders."
        ),
    )
    for name in ("kafka", "redis"):
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=0,
            metavar="PORT",
            help=f"the {name.capitalize()} port on 127.0.0.1 (default: a free one)",
        )
    _add_log_options(parser, default=argparse.SUPPRESS)
    parser.set_defaults(handler=run_services_command)


def run_services_command(args: argparse.Namespace) -> int:
    from driftstream.runtime.services import local_services, port_taken

    for option, port in (("--kafka-port", args.kafka_port), ("--redis-port", args.redis_port)):
        if not 0 <= port <= 65535:
            msg = f"{option} {port} is not a port: give 1-65535, or 0 for a free one"
            raise UsageError(msg)
        if port and port_taken(port):
            msg = f"{option} {port} on 127.0.0.1 is in use: stop what holds it or choose another"
            raise UsageError(msg)
    if args.kafka_port and args.kafka_port == args.redis_port:
        msg = f"--kafka-port and --redis-port are both {args.kafka_port}: give two ports"
        raise UsageError(msg)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    print("starting embedded Kafka (Tansu) and Redis ...", file=sys.stderr, flush=True)
    with local_services(os.environ, args.kafka_port, args.redis_port) as services:
        print(services.describe(), flush=True)
        print("up; Ctrl-C stops both and removes their folders", file=sys.stderr, flush=True)
        services.wait(stop)
        print("stopping ...", file=sys.stderr, flush=True)
    print("stopped", file=sys.stderr, flush=True)
    return 0


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C: every ``with`` block cleans up on the way out."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


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
