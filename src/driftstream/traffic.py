"""``driftstream traffic``: the demo's synthetic traffic, produced live to a running Kafka.

A compose setup or a fresh deployment shows nothing until traffic flows.
This produces prediction events for the config's models (the demo's fraud
generator, one seed per model) at a steady rate, drifts the demo's drifted
features from a known event on, and sends each prediction's label after a
random delay, as a label source would. Event time is the wall clock, so
windows, freshness checks and the dashboard follow real time.

``write_baselines`` profiles the generator's training data into each
model's baseline where the config expects it, so a setup needs no files of
its own before the first run.
"""

from __future__ import annotations

import heapq
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from driftstream import synthetic
from driftstream.client import DeliveryError, DriftClient, QueueFullError
from driftstream.config import Config, ConfigError, load_config
from driftstream.core.baseline import build_profile
from driftstream.demo import DRIFTED, LABEL_LOSS
from driftstream.runtime.app import check_kafka
from driftstream.runtime.services import ServiceError

CHUNK = 2_000  # rows generated at a time per model and regime (stable or drifted)
TRAINING_ROWS = 20_000  # rows profiled into a baseline, as the demo's
POSITIVE = "fraud"  # the generator's positive class
DEFAULT_VERSION = "v1"  # events' model_version when the config names none


@dataclass(frozen=True)
class TrafficOptions:
    """What to produce. ``events`` 0 runs until stopped; ``drift_at`` None never drifts."""

    events: int
    rate: float
    drift_at: int | None
    models: tuple[str, ...]
    labels: bool = True
    label_delay: float = 30.0  # mean seconds from a prediction to its label
    seed: int = 7
    progress_seconds: float = 10.0


@dataclass(frozen=True)
class Produced:
    predictions: int
    labels: int
    labels_dropped: int  # still waiting for their delay when a stop came


def chosen_models(config: Config, names: Sequence[str]) -> tuple[str, ...]:
    """The models to produce for: ``names``, or every model of the config."""
    unknown = [name for name in names if name not in config.models]
    if unknown:
        msg = (
            f"--model {unknown[0]}: not a model of the config "
            f"(models: {', '.join(sorted(config.models))})"
        )
        raise ConfigError(msg)
    return tuple(names) or tuple(config.models)


def write_baselines(config: Config, models: Sequence[str], seed: int, err: TextIO) -> int:
    """Write each model's baseline from the generator's training data; keep existing files.

    Returns how many were written. An existing file is never overwritten: it
    may be a real baseline, and a compose setup runs this on every start.
    """
    written = 0
    for index, model_id in enumerate(models):
        path = Path(config.models[model_id].baseline)
        if path.exists():
            err.write(f"{model_id}: kept the existing baseline {path}\n")
            continue
        profile = build_profile(
            synthetic.frame(TRAINING_ROWS, seed + index),
            model_id=model_id,
            prediction="prediction",
            score="score",
            target="label",
            positive=POSITIVE,
            created_from="driftstream traffic: synthetic training data",
            created_at=time.time(),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(profile.to_json())
        except OSError as error:
            msg = f"models.{model_id}.baseline: cannot write {path}: {error.strerror}"
            raise ConfigError(msg) from None
        err.write(f"{model_id}: wrote the baseline {path} ({TRAINING_ROWS:,} synthetic rows)\n")
        written += 1
    return written


class Rows:
    """A model's endless stream of generated rows, stable or drifted on demand."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._chunks = 0
        self._stable = self._rows(())
        self._drifted = self._rows(DRIFTED)

    def next(self, drifted: bool) -> dict[str, Any]:
        return next(self._drifted if drifted else self._stable)

    def _rows(self, drift: Sequence[str]) -> Iterator[dict[str, Any]]:
        while True:
            self._chunks += 1
            data = synthetic.frame(CHUNK, self._seed * 1_000_003 + self._chunks, drift=drift)
            rows = zip(
                synthetic.feature_rows(data),
                data["prediction"].tolist(),
                data["score"].tolist(),
                data["label"].tolist(),
                strict=True,
            )
            for features, prediction, score, label in rows:
                # A JSON boolean, as a model server would send it.
                features["is_new_customer"] = features["is_new_customer"] == "true"
                yield {
                    "features": features,
                    "prediction": prediction,
                    "score": score,
                    "label": label,
                }


class Labels:
    """Labels waiting for their send time (wall clock), as a label source holds them."""

    def __init__(self, mean_delay: float, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._mean_delay = mean_delay
        self._waiting: list[tuple[float, int, str, str, str]] = []
        self._count = 0

    def hold(self, model_id: str, event_id: str, label: str, now: float) -> None:
        """Keep a prediction's label for a random delay; a share is never sent."""
        if self._rng.random() < LABEL_LOSS:
            return
        delay = float(self._rng.exponential(self._mean_delay)) if self._mean_delay else 0.0
        self._count += 1
        heapq.heappush(self._waiting, (now + delay, self._count, model_id, event_id, label))

    def due(self, now: float) -> Iterator[tuple[str, str, str]]:
        """Take the labels whose time has come (all of them with ``now`` infinite)."""
        while self._waiting and self._waiting[0][0] <= now:
            _, _, model_id, event_id, label = heapq.heappop(self._waiting)
            yield model_id, event_id, label

    def __len__(self) -> int:
        return len(self._waiting)


def produce_traffic(
    config: Config, options: TrafficOptions, stop: threading.Event, err: TextIO
) -> Produced:
    """Produce until ``options.events`` are sent (then the waiting labels) or ``stop`` is set."""
    run = TrafficRun(config, options, err)
    try:
        run.produce(stop)
    except (QueueFullError, DeliveryError) as error:
        bootstrap = config.kafka.client_settings().get("bootstrap.servers")
        msg = f"producing to Kafka at {bootstrap!r} (kafka.client.bootstrap.servers): {error}"
        raise ServiceError(msg) from None
    return Produced(run.sent, run.labels, len(run.waiting))


class TrafficRun:
    """One run of the generator: what it sends, to which client, and how far it got."""

    def __init__(self, config: Config, options: TrafficOptions, err: TextIO) -> None:
        self.config = config
        self.options = options
        self.err = err
        self.labelled = {
            model_id
            for model_id in options.models
            if options.labels and config.models[model_id].labels is not None
        }
        self.rows = {model_id: Rows(options.seed + i) for i, model_id in enumerate(options.models)}
        self.waiting = Labels(options.label_delay, options.seed)
        topics = config.kafka.topics
        self.client = DriftClient(
            config=config.kafka.shared_settings(),
            predictions_topic=topics.predictions,
            features_topic=topics.features,
            labels_topic=topics.labels,
        )
        self.sent = self.labels = 0

    def produce(self, stop: threading.Event) -> None:
        """Keep to the rate in bursts: whatever is due now, then wait for the next event's turn."""
        _announce(self.config, self.options, self.labelled, self.err)
        rate, total = self.options.rate, self.options.events
        started = last_report = time.monotonic()
        while not stop.is_set() and (total == 0 or self.sent < total):
            due = int((time.monotonic() - started) * rate) + 1
            self._predictions(min(due, total) if total else due)
            self.labels += self._labels(time.monotonic())
            if time.monotonic() - last_report >= self.options.progress_seconds:
                last_report = time.monotonic()
                achieved = self.sent / max(last_report - started, 1e-9)
                self.err.write(
                    f"  {self.sent:,} events ({achieved:,.0f}/s), {self.labels:,} labels\n"
                )
            stop.wait(max(0.0, started + self.sent / rate - time.monotonic()))
        if not stop.is_set():
            self.labels += self._labels(float("inf"))
        self.client.close()

    def _predictions(self, due: int) -> None:
        models, drift_at = self.options.models, self.options.drift_at
        while self.sent < due:
            model_id = models[self.sent % len(models)]
            row = self.rows[model_id].next(drift_at is not None and self.sent >= drift_at)
            event_id = self.client.log_prediction(
                model_id,
                row["features"],
                row["prediction"],
                score=row["score"],
                model_version=self.config.models[model_id].model_version or DEFAULT_VERSION,
            )
            if model_id in self.labelled:
                self.waiting.hold(model_id, event_id, row["label"], time.monotonic())
            self.sent += 1

    def _labels(self, now: float) -> int:
        sent = 0
        for model_id, event_id, label in self.waiting.due(now):
            self.client.log_label(model_id, event_id, label)
            sent += 1
        return sent


def _announce(config: Config, options: TrafficOptions, labelled: set[str], err: TextIO) -> None:
    total = f"{options.events:,} events" if options.events else "events until stopped"
    drift = "no drift"
    if options.drift_at is not None:
        drift = f"drift of {', '.join(DRIFTED)} from event {options.drift_at:,}"
    label_note = f"labels for {', '.join(sorted(labelled))}" if labelled else "no labels"
    err.write(
        f"producing {total} at {options.rate:,.0f}/s to {config.kafka.topics.predictions} "
        f"for {', '.join(options.models)}: {drift}; {label_note}\n"
    )


def run_traffic(
    config_path: Path,
    events: int,
    rate: float,
    drift_at: int | None,
    names: Sequence[str],
    *,
    labels: bool,
    label_delay: float,
    seed: int,
    baselines_only: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """The ``driftstream traffic`` command: write baselines, or produce until done or stopped."""
    config = load_config(config_path)
    models = chosen_models(config, names)
    if baselines_only:
        written = write_baselines(config, models, seed, err)
        out.write(f"{written} baseline(s) written, {len(models) - written} kept\n")
        return 0
    check_kafka(config)
    options = TrafficOptions(
        events=events,
        rate=rate,
        drift_at=drift_at,
        models=models,
        labels=labels,
        label_delay=label_delay,
        seed=seed,
    )
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        produced = produce_traffic(config, options, stop, err)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary = f"produced {produced.predictions:,} prediction events and {produced.labels:,} labels"
    if produced.labels_dropped:
        summary += f" ({produced.labels_dropped:,} labels not due yet were dropped)"
    out.write(summary + "\n")
    return 0
