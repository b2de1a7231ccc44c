"""A unit's monitors for one micro-batch: split by version and segment, updated together.

For each model and role in the batch, the model's ``KeyRegistry`` assigns
rows to monitors (``core/keys.py``). Rows are gathered once per split (the
whole traffic, then each segment key) with one numpy take per column, and
the monitors' sequential detectors all run in one pass
(``core.monitor.update_monitors``), so the work per batch follows the
events, not the number of monitors.

Nothing here reads Redis: the caller (``worker.Worker._prepare``) loads
every registry, comparison and monitor a batch needs first, so a read that
fails leaves the unit as it was and the batch can be prepared again.
Registries are planned on copies, installed in the unit only on commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from driftstream.core.anomaly_monitor import AnomalyMonitor
from driftstream.core.batch import Batch
from driftstream.core.comparison import VersionComparison
from driftstream.core.findings import Finding, Reading
from driftstream.core.keys import WHOLE, KeyRegistry, MonitorKey, Plan, Run, Split
from driftstream.core.monitor import ModelMonitor, update_monitors
from driftstream.core.settings import PREDICTION, SCORE
from driftstream.runtime.decode import ModelBatch
from driftstream.runtime.models import (
    PREDICTIONS,
    ModelSpec,
    anomaly_state_name,
    comparison_state_name,
    keys_state_name,
    state_name,
)


@dataclass
class Planned:
    """One model's batch of one role, its rows assigned to monitors."""

    batch: ModelBatch
    plan: Plan
    registry: KeyRegistry | None  # None: the model is not split
    comparison: VersionComparison | None
    anomaly: AnomalyMonitor | None = None  # prediction events of a model that scores them


@dataclass
class Fed:
    """One monitor's part of a batch: its key, its rows and its findings."""

    planned: Planned
    key: MonitorKey
    name: str
    monitor: ModelMonitor
    rows: np.ndarray
    batch: Batch
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Outcome:
    """What the monitors of a unit did with one batch."""

    fed: list[Fed]
    comparisons: list[tuple[Planned, list[Finding]]]
    anomalies: list[tuple[Planned, list[Finding]]]
    touched: dict[str, ModelMonitor]
    deleted: set[str]
    retired: list[tuple[str, str, str]]  # (model, role, version)
    registries: dict[str, KeyRegistry]  # name -> registry after the batch
    overflow: list[tuple[str, str, int]]  # (model, segment key, rows sent to __other__)


def plan_batches(
    batches: Sequence[ModelBatch],
    models: Mapping[str, ModelSpec],
    registries: Mapping[str, KeyRegistry],
    comparisons: Mapping[str, VersionComparison],
    anomalies: Mapping[str, AnomalyMonitor],
) -> list[Planned]:
    """Each batch's rows by monitor; registries are copied, never changed in place."""
    planned = []
    for batch in batches:
        spec = models[batch.model_id]
        registry = None
        if spec.keys.splits:
            saved = registries[keys_state_name(batch.role, batch.model_id)]
            registry = KeyRegistry.from_state(spec.keys, saved.to_state())
            plan = registry.plan(batch.batch.ts, batch.versions, batch.segment_columns)
        else:
            plan = _whole(len(batch.offsets))
        comparison = None
        if spec.comparison is not None and batch.role == PREDICTIONS:
            comparison = comparisons[comparison_state_name(batch.model_id)]
        anomaly = None
        if spec.anomaly is not None and batch.role == PREDICTIONS:
            anomaly = anomalies[anomaly_state_name(batch.model_id)]
        planned.append(Planned(batch, plan, registry, comparison, anomaly))
    return planned


def wanted_monitors(planned: Sequence[Planned]) -> dict[str, tuple[str, str, MonitorKey]]:
    """Every monitor the plans feed: state name -> (role, model, key)."""
    wanted = {}
    for item in planned:
        role, model_id = item.batch.role, item.batch.model_id
        for run in item.plan.runs:
            for split in run.splits:
                for key in split.keys:
                    wanted[state_name(role, model_id, key)] = (role, model_id, key)
    return wanted


def update(
    planned: Sequence[Planned],
    monitors: dict[str, ModelMonitor],
    models: Mapping[str, ModelSpec],
) -> Outcome:
    """Run every plan, run by run; ``monitors`` (the unit's) gains and loses monitors."""
    outcome = Outcome([], [], [], {}, set(), [], {}, [])
    runs = max((len(item.plan.runs) for item in planned), default=0)
    found: dict[int, list[Finding]] = {id(item): [] for item in planned}
    for index in range(runs):
        fed: list[Fed] = []
        for item in planned:
            if index < len(item.plan.runs):
                run = item.plan.runs[index]
                _retire(item, run, monitors, outcome)
                fed += _feed(item, run, monitors, models)
        results = update_monitors([(f.monitor, f.batch) for f in fed])
        for part, findings in zip(fed, results, strict=True):
            part.findings = [replace(f, row=int(part.rows[f.row])) for f in findings]
            outcome.touched[part.name] = part.monitor
        outcome.fed += fed
        for item in planned:
            if index < len(item.plan.runs) and item.comparison is not None:
                found[id(item)] += _compare(item, item.plan.runs[index])
    for item in planned:
        batch = item.batch
        if item.registry is not None:
            outcome.registries[keys_state_name(batch.role, batch.model_id)] = item.registry
        if item.comparison is not None:
            outcome.comparisons.append((item, found[id(item)]))
        if item.anomaly is not None:
            outcome.anomalies.append((item, _score(item)))
        for key, count in item.plan.overflow.items():
            if count:
                outcome.overflow.append((batch.model_id, key, count))
    outcome.deleted -= outcome.touched.keys()
    return outcome


def states(outcome: Outcome) -> dict[str, bytes]:
    """The blobs to commit: touched monitors, registries, comparisons; b"" deletes one."""
    blobs = {name: orjson.dumps(m.to_state()) for name, m in outcome.touched.items()}
    blobs.update(dict.fromkeys(outcome.deleted, b""))
    for name, registry in outcome.registries.items():
        blobs[name] = orjson.dumps(registry.to_state())
    for item, _ in outcome.comparisons:
        assert item.comparison is not None
        name = comparison_state_name(item.batch.model_id)
        blobs[name] = orjson.dumps(item.comparison.to_state())
    for item, _ in outcome.anomalies:
        assert item.anomaly is not None
        blobs[anomaly_state_name(item.batch.model_id)] = orjson.dumps(item.anomaly.to_state())
    return blobs


def readings(outcome: Outcome) -> list[tuple[str, str, list[Reading]]]:
    """Judged windows of the monitors that see a version's whole traffic (not a segment's)."""
    return [
        (part.planned.batch.model_id, part.planned.batch.role, part.monitor.readings)
        for part in outcome.fed
        if not part.key.segment_key
    ]


def _whole(n: int) -> Plan:
    run = Run(0, n, [])
    run.splits = [Split(np.arange(n, dtype=np.intp), [0, n], [WHOLE])]
    return Plan([run], {})


def _retire(item: Planned, run: Run, monitors: dict[str, ModelMonitor], outcome: Outcome) -> None:
    """Drop a retired version's monitors; their state is deleted by the commit."""
    if not run.retired:
        return
    assert item.registry is not None  # only a split model retires versions
    role, model_id = item.batch.role, item.batch.model_id
    for version in run.retired:
        for key in item.registry.monitors_of(version):
            name = state_name(role, model_id, key)
            monitors.pop(name, None)
            outcome.touched.pop(name, None)
            outcome.deleted.add(name)
        if item.comparison is not None:
            item.comparison.retire(version)
        outcome.retired.append((model_id, role, version))


def _feed(
    item: Planned, run: Run, monitors: dict[str, ModelMonitor], models: Mapping[str, ModelSpec]
) -> list[Fed]:
    """Each monitor's rows of one run, as a batch gathered once per split."""
    batch = item.batch.batch
    role, model_id = item.batch.role, item.batch.model_id
    fed = []
    for split in run.splits:
        gathered = _gather(batch, split.order, len(split.keys) == 1)
        for i, key in enumerate(split.keys):
            start, stop = split.bounds[i], split.bounds[i + 1]
            name = state_name(role, model_id, key)
            monitor = monitors.get(name)
            if monitor is None:
                monitor = monitors[name] = models[model_id].new_monitor(role, key)
            part = gathered.slice(start, stop) if len(split.keys) > 1 else gathered
            fed.append(Fed(item, key, name, monitor, split.order[start:stop], part))
    return fed


def _gather(batch: Batch, order: np.ndarray, rising: bool) -> Batch:
    """The batch's rows in ``order``, each column taken once; a view for a run of rows.

    ``rising``: the rows are in event order (one group), so a run of
    consecutive rows shows in its ends alone.
    """
    n = len(order)
    if rising and (n == 0 or order[-1] - order[0] == n - 1):
        if n == len(batch):
            return batch
        return batch.slice(int(order[0]), int(order[-1]) + 1) if n else batch.slice(0, 0)
    return Batch(batch.ts[order], {name: column[order] for name, column in batch.columns.items()})


def _compare(item: Planned, run: Run) -> list[Finding]:
    """The comparison's findings over one run, rows counted in the whole batch."""
    assert item.comparison is not None
    batch = item.batch
    rows = slice(run.start, run.stop)
    columns = {
        name: batch.batch.columns[name][rows]
        for name in (PREDICTION, SCORE)
        if name in batch.batch.columns
    }
    findings = item.comparison.update(batch.batch.ts[rows], batch.versions[rows], columns)
    return [replace(f, row=f.row + run.start) for f in findings]


def _score(item: Planned) -> list[Finding]:
    """Anomaly findings of a model's prediction events, rows counted in the whole batch."""
    assert item.anomaly is not None
    batch = item.batch
    return item.anomaly.update(batch.batch, event_ids=batch.event_ids, versions=batch.versions)


def segment_label(key: MonitorKey) -> str:
    """A monitor's segment as one metric label value: ``country=US``; ``""`` for all traffic."""
    return ",".join(f"{name}={value}" for name, value in key.segment().items())
