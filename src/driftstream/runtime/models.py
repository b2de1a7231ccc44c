"""The configured models, ready for the runtime: baselines, settings, columns.

Each model has two monitors per partition unit: one over prediction events
(features, prediction and score) and one over feature events, which watch
a feature pipeline on its own and have no model outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from driftstream.config import (
    Config,
    ConfigError,
    LabelsConfig,
    ModelConfig,
    anomaly_settings,
    monitor_settings,
    read_baseline,
)
from driftstream.contract import FEATURES, LABELS, PREDICTIONS, ROLES  # noqa: F401  (re-exported)
from driftstream.core import performance
from driftstream.core.anomaly import AnomalyScorer
from driftstream.core.anomaly_monitor import AnomalyMonitor, AnomalySettings
from driftstream.core.baseline import BaselineProfile
from driftstream.core.budget import Budget
from driftstream.core.dead_letter_rate import DeadLetterRate, DeadLetterSettings
from driftstream.core.freshness import FreshnessSettings
from driftstream.core.keys import WHOLE, KeySettings, MonitorKey
from driftstream.core.monitor import ModelMonitor, window_tests
from driftstream.core.performance_monitor import (
    MetricSetting,
    PerformanceMonitor,
    PerformanceSettings,
)
from driftstream.core.settings import (
    CATEGORICAL,
    NUMERIC,
    PREDICTION,
    SCORE,
    ComparisonSettings,
    MonitorSettings,
)
from driftstream.runtime.decode import ModelColumns
from driftstream.runtime.labels import JoinSettings, positive_code


@dataclass(frozen=True)
class LabelSpec:
    """How a model's labels are joined and judged."""

    join: JoinSettings
    performance: PerformanceSettings
    reference: Any | None  # performance.Reference from the baseline, if it has one

    def new_monitor(self) -> PerformanceMonitor:
        return PerformanceMonitor(self.performance, self.reference)

    def restore_monitor(self, state: Mapping[str, Any]) -> PerformanceMonitor:
        return PerformanceMonitor.from_state(self.performance, self.reference, state)


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: its baseline, the settings of each role's monitor, its splits."""

    model_id: str
    baseline: BaselineProfile
    settings: Mapping[str, MonitorSettings]  # role -> settings
    labels: LabelSpec | None = None  # None: the model's labels are refused
    keys: KeySettings = field(default_factory=KeySettings)
    segment_min_count: int = 1
    comparison: ComparisonSettings | None = None  # champion vs challenger, when on
    version_baselines: Mapping[str, BaselineProfile] = field(default_factory=dict)
    anomaly: AnomalySettings | None = None  # None: events are not scored
    scorer: AnomalyScorer | None = None  # built once from the baseline, with ``anomaly``
    freshness: FreshnessSettings | None = None  # None: silences and the age not watched
    dead_letters: DeadLetterSettings | None = None  # None: its dead-letter share not judged

    def new_dead_letters(self) -> DeadLetterRate:
        assert self.dead_letters is not None
        return DeadLetterRate(self.dead_letters)

    def restore_dead_letters(self, state: Mapping[str, Any]) -> DeadLetterRate:
        assert self.dead_letters is not None
        return DeadLetterRate.from_state(self.dead_letters, state)

    def new_anomaly(self) -> AnomalyMonitor:
        assert self.anomaly is not None and self.scorer is not None
        return AnomalyMonitor(self.anomaly, self.scorer)

    def restore_anomaly(self, state: Mapping[str, Any]) -> AnomalyMonitor:
        assert self.anomaly is not None and self.scorer is not None
        return AnomalyMonitor.from_state(self.anomaly, self.scorer, state)

    def baseline_of(self, key: MonitorKey = WHOLE) -> BaselineProfile:
        """The baseline a monitor is judged against: its version's own, if configured."""
        return self.version_baselines.get(key.version, self.baseline)

    def new_monitor(self, role: str, key: MonitorKey = WHOLE) -> ModelMonitor:
        return ModelMonitor(self.monitor_settings(role, key), self.baseline_of(key))

    def restore_monitor(
        self, role: str, state: Mapping[str, object], key: MonitorKey = WHOLE
    ) -> ModelMonitor:
        settings = self.monitor_settings(role, key)
        return ModelMonitor.from_state(settings, self.baseline_of(key), state)

    def monitor_settings(self, role: str, key: MonitorKey = WHOLE) -> MonitorSettings:
        """A monitor's settings: its version's label; a segment's own minimum window size."""
        settings = self.settings[role]
        if key.version:
            settings = replace(settings, model_version=key.version)
        if key.segment_key and self.segment_min_count > settings.window.min_count:
            window = replace(settings.window, min_count=self.segment_min_count)
            settings = replace(settings, window=window)
        return settings

    def columns(self) -> ModelColumns:
        """The baseline's columns to decode, less features the config turned off."""
        watched = {f.name for f in self.settings[PREDICTIONS].features}
        full = ModelColumns.from_baseline(self.baseline)
        label_kind = None
        if self.labels is not None:
            label_kind = NUMERIC if self.labels.join.regression else CATEGORICAL
        return replace(
            full,
            numeric=tuple(name for name in full.numeric if name in watched),
            categorical=tuple(name for name in full.categorical if name in watched),
            label_kind=label_kind,
            segment_keys=self.keys.segment_names,
            ignored=tuple(name for name in self.baseline.features if name not in watched),
        )


def _output(name: str) -> bool:
    return name in (PREDICTION, SCORE)


def load_models(config: Config) -> dict[str, ModelSpec]:
    """Read every model's baseline and build its settings; fails naming the key."""
    models = {}
    for model_id, model in config.models.items():
        baseline = read_baseline(model_id, model)
        keys = key_settings(model)
        settings = budgeted(config, keys, monitor_settings(model_id, model, baseline))
        inputs_only = replace(
            settings, features=tuple(f for f in settings.features if not _output(f.name))
        )
        labels = None
        if model.labels is not None:
            labels = label_spec(model_id, model.labels, baseline, settings)
            if model.versions.monitor and model.versions.compare:
                judged = replace(
                    labels.performance, compare_versions=True, champion=model.versions.champion
                )
                labels = replace(labels, performance=judged)
        models[model_id] = ModelSpec(
            model_id,
            baseline,
            {PREDICTIONS: settings, FEATURES: inputs_only},
            labels,
            keys,
            model.segments.min_count,
            comparison_settings(model_id, model, settings),
            version_baselines(model_id, model, baseline),
            *anomaly_spec(model_id, model, baseline, settings),
            freshness=model.quality.freshness(),
            dead_letters=model.quality.dead_letters(settings.episodes),
        )
    check_series(config, models)
    return models


def budgeted(config: Config, keys: KeySettings, settings: MonitorSettings) -> MonitorSettings:
    """Settings that share ``alerts.false_alarms_per_day`` with every monitor the model may run."""
    per_day = config.alerts.false_alarms_per_day
    if per_day is None:
        return settings
    roles = 2  # predictions and features monitors
    return replace(settings, budget=Budget(per_day), budget_monitors=monitors_at_most(keys) * roles)


def monitors_at_most(keys: KeySettings) -> int:
    """The caps' worst case: monitors of one role of a model, over versions and segment values."""
    versions = keys.max_versions if keys.versions else 1
    return versions * (1 + len(keys.segment_keys) * (keys.max_values + 1))


def anomaly_spec(
    model_id: str, model: ModelConfig, baseline: BaselineProfile, settings: MonitorSettings
) -> tuple[AnomalySettings | None, AnomalyScorer | None]:
    """The anomaly settings and the scorer, calibrated once here (a fraction of a second).

    Only decoded features can be scored: by default the baseline's
    features the config watches; a feature turned off cannot be named.
    """
    anomaly = anomaly_settings(model_id, model, baseline)
    if anomaly is None:
        return None, None
    watched = [f.name for f in settings.features if f.name in baseline.features]
    columns = anomaly.columns or tuple(watched)
    off = [name for name in columns if name not in watched]
    if off:
        msg = f"models.{model_id}.anomaly.columns: {off} are turned off in features, so not decoded"
        raise ConfigError(msg)
    if not columns:
        return None, None  # nothing to score
    tests = window_tests(settings) + 1  # the model's windowed tests and its anomaly rate
    anomaly = replace(anomaly, columns=columns, budget=settings.budget, budget_tests=tests)
    return anomaly, AnomalyScorer(baseline, columns, anomaly.rate)


def version_baselines(
    model_id: str, model: ModelConfig, baseline: BaselineProfile
) -> dict[str, BaselineProfile]:
    """Per-version baselines; each must profile the same columns as the model's."""
    found = {}
    columns = ModelColumns.from_baseline(baseline)
    for version, path in model.versions.baselines.items():
        where = f"models.{model_id}.versions.baselines.{version}"
        if not model.versions.monitor:
            msg = f"{where}: per-version baselines need versions.monitor: true"
            raise ConfigError(msg)
        own = read_baseline(model_id, model, path, where)
        if ModelColumns.from_baseline(own) != columns:
            msg = (
                f"{where}: {path} profiles other columns than the model's baseline "
                f"{model.baseline}; a version's baseline must have the same features, "
                "prediction and score"
            )
            raise ConfigError(msg)
        found[version] = own
    return found


def key_settings(model: ModelConfig) -> KeySettings:
    """How a model's traffic splits between monitors, from its config."""
    return KeySettings(
        versions=model.versions.monitor,
        max_versions=model.versions.max_active,
        retire_after_seconds=model.versions.retire_after_seconds,
        segment_keys=tuple(model.segments.keys),
        max_values=model.segments.max_values,
    )


def comparison_settings(
    model_id: str, model: ModelConfig, settings: MonitorSettings
) -> ComparisonSettings | None:
    """Champion vs challenger on the model's outputs, when versions are split and compared."""
    versions = model.versions
    columns = tuple(f for f in settings.features if _output(f.name))
    if not (versions.monitor and versions.compare and columns):
        return None
    return ComparisonSettings(
        model_id=model_id,
        columns=columns,
        seconds=versions.compare_seconds,
        min_count=versions.min_count,
        champion=versions.champion,
        max_versions=versions.max_active,
        episodes=settings.episodes,
        category_cap=settings.category_cap,
    )


def monitor_series(spec: ModelSpec) -> tuple[int, int, int]:
    """The caps' worst case for one model: versions, monitors per version, series per monitor."""
    keys = spec.keys
    versions = keys.max_versions if keys.versions else 1
    monitors = 1 + len(keys.segment_keys) * (keys.max_values + 1)
    settings = spec.settings[PREDICTIONS]
    references = 2 if settings.compare_previous else 1
    per_monitor = sum(len(f.statistics) for f in settings.features) * references
    return versions, monitors, per_monitor


def check_series(config: Config, models: Mapping[str, ModelSpec]) -> None:
    """Refuse caps that could export more statistic series than ``metrics.max_series``."""
    limit = config.metrics.max_series
    parts = {model_id: monitor_series(spec) for model_id, spec in models.items()}
    total = sum(v * m * s for v, m, s in parts.values())
    if total <= limit:
        return
    largest = sorted(parts.items(), key=lambda item: -math.prod(item[1]))[:3]
    shown = "; ".join(
        f"models.{model_id}: {v} version(s) x {m} monitor(s) x {s} series = {v * m * s:,}"
        for model_id, (v, m, s) in largest
    )
    msg = (
        f"metrics.max_series: the configured caps allow up to {total:,} drift-statistic "
        f"series, over the limit of {limit:,} ({shown}). Lower versions.max_active, "
        "segments.max_values or the segment keys, or raise metrics.max_series"
    )
    raise ConfigError(msg)


def label_spec(
    model_id: str, config: LabelsConfig, baseline: BaselineProfile, settings: MonitorSettings
) -> LabelSpec:
    """A model's label settings, from its config and its baseline; fails naming the key."""
    where = f"models.{model_id}.labels"
    recorded = getattr(baseline, "performance", None)
    task = config.task or (recorded.task if recorded is not None else None)
    if task is None:
        msg = (
            f"{where}.task: set classification or regression, or build the baseline with "
            "--target and --prediction so it records the task"
        )
        raise ConfigError(msg)
    if baseline.prediction is None:
        msg = f"{where}: the baseline has no prediction column; build it with --prediction"
        raise ConfigError(msg)
    if config.wait_seconds > config.ttl_seconds:
        msg = f"{where}.wait_seconds: {config.wait_seconds} is longer than ttl_seconds"
        raise ConfigError(msg)
    if config.ttl_seconds / config.window_seconds > 10_000:
        msg = f"{where}.window_seconds: ttl_seconds spans over 10,000 windows; use longer windows"
        raise ConfigError(msg)
    positive = config.positive
    if recorded is not None and recorded.task == task:
        if positive is None:
            positive = recorded.positive
        elif positive != recorded.positive:
            msg = (
                f"{where}.positive: {positive!r}, but the baseline's metrics were measured with "
                f"positive class {recorded.positive!r}; rebuild it with --positive {positive}"
            )
            raise ConfigError(msg)
    reference = recorded.reference if recorded is not None and recorded.task == task else None
    regression = task == performance.REGRESSION
    join = JoinSettings(
        regression=regression,
        ttl_seconds=config.ttl_seconds,
        lateness_seconds=config.lateness_seconds,
        max_pending=config.max_pending,
        sample_rate=config.sample_rate,
        window_seconds=config.window_seconds,
        wait_seconds=config.wait_seconds,
    )
    names = performance.REGRESSION_METRICS if regression else performance.CLASSIFICATION_METRICS
    for name in config.metrics:
        if name not in names:
            msg = f"{where}.metrics.{name}: not a {task} metric (use one of {list(names)})"
            raise ConfigError(msg)
    metrics = tuple(
        MetricSetting(name, config.metrics[name].z, config.metrics[name].tolerance)
        if name in config.metrics
        else MetricSetting(name)
        for name in names
        if name not in config.metrics or config.metrics[name].enabled
    )
    judged = PerformanceSettings(
        model_id=model_id,
        task=task,
        positive=None if positive is None or regression else positive_code(positive),
        min_count=config.min_count,
        metrics=metrics,
        detectors=tuple(config.detectors),
        episodes=settings.episodes,
        adwin=settings.adwin,
    )
    return LabelSpec(join, judged, reference)


def state_name(role: str, model_id: str, key: MonitorKey = WHOLE) -> str:
    """Name of a monitor's state blob inside a partition unit."""
    return f"{role}:{model_id}{key.suffix()}"


def keys_state_name(role: str, model_id: str) -> str:
    """Name of a model's active versions and segment values of one role in a partition unit."""
    return f"keys:{role}:{model_id}"


def anomaly_state_name(model_id: str) -> str:
    """Name of a model's anomaly monitor (rate limit, anomaly-rate windows) in a partition unit."""
    return f"anomaly:{model_id}"


def comparison_state_name(model_id: str) -> str:
    """Name of a model's champion vs challenger comparison inside a partition unit."""
    return f"compare:{model_id}"


def dead_letters_state_name(role: str, model_id: str) -> str:
    """Name of a model's dead-letter share windows of one role inside a partition unit."""
    return f"dead_letters:{role}:{model_id}"


FRESHNESS_STATE_NAME = "freshness"
"""Name of the unit's freshness watch (every model's latest event time) in its state hash."""
