"""The configured models, ready for the runtime: baselines, settings, columns.

Each model has two monitors per partition unit: one over prediction events
(features, prediction and score) and one over feature events, which watch
a feature pipeline on its own and have no model outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from driftstream.config import Config, monitor_settings, read_baseline
from driftstream.contract import FEATURES, PREDICTIONS, ROLES  # noqa: F401  (re-exported)
from driftstream.core.baseline import BaselineProfile
from driftstream.core.monitor import ModelMonitor
from driftstream.core.settings import PREDICTION, SCORE, MonitorSettings
from driftstream.runtime.decode import ModelColumns


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: its baseline and the settings of each role's monitor."""

    model_id: str
    baseline: BaselineProfile
    settings: Mapping[str, MonitorSettings]  # role -> settings

    def new_monitor(self, role: str) -> ModelMonitor:
        return ModelMonitor(self.settings[role], self.baseline)

    def restore_monitor(self, role: str, state: Mapping[str, object]) -> ModelMonitor:
        return ModelMonitor.from_state(self.settings[role], self.baseline, state)

    def columns(self) -> ModelColumns:
        """The baseline's columns to decode, less features the config turned off."""
        watched = {f.name for f in self.settings[PREDICTIONS].features}
        full = ModelColumns.from_baseline(self.baseline)
        return replace(
            full,
            numeric=tuple(name for name in full.numeric if name in watched),
            categorical=tuple(name for name in full.categorical if name in watched),
        )


def _output(name: str) -> bool:
    return name in (PREDICTION, SCORE)


def load_models(config: Config) -> dict[str, ModelSpec]:
    """Read every model's baseline and build its settings; fails naming the key."""
    models = {}
    for model_id, model in config.models.items():
        baseline = read_baseline(model_id, model)
        settings = monitor_settings(model_id, model, baseline)
        inputs_only = replace(
            settings, features=tuple(f for f in settings.features if not _output(f.name))
        )
        models[model_id] = ModelSpec(
            model_id, baseline, {PREDICTIONS: settings, FEATURES: inputs_only}
        )
    return models


def state_name(role: str, model_id: str) -> str:
    """Name of a monitor's state blob inside a partition unit."""
    return f"{role}:{model_id}"
