"""Findings: what a monitor reports, with everything an alert needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DRIFT = "drift"
RESOLVED = "resolved"
COMPARISON = "comparison"

BASELINE = "baseline"
PREVIOUS_WINDOW = "previous_window"


@dataclass(frozen=True)
class Finding:
    """An episode starting (``kind="drift"``, ``"comparison"``...) or ending (``"resolved"``).

    ``row`` is the position, within the batch given to ``update``, of the
    event that triggered the finding (the event that closed the window, or
    the event at which a detector fired). The runtime maps it to a Kafka
    offset. ``event_time`` is that event's ``ts``. ``details`` holds plain
    JSON-able extras of some kinds (a comparison names both versions); it
    takes no part in the hash.
    """

    kind: str
    model_id: str
    model_version: str
    feature: str
    detector: str
    statistic: str
    value: float
    threshold: float
    severity: str
    reference: str
    window_start: float
    window_end: float
    window_count: int
    event_time: float
    row: int
    details: Mapping[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-able)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["details"] = None if self.details is None else dict(self.details)
        return data


@dataclass(frozen=True)
class Reading:
    """One judged window's value of one statistic, alert or not: a point of the timeline.

    Monitors keep the readings of their last update (not state: the next
    update replaces them), so a replay can chart every window.
    """

    column: str
    statistic: str
    reference: str
    value: float
    threshold: float | None
    start: float
    end: float
    count: int
    baseline: float | None = None  # performance metrics: the baseline's value
