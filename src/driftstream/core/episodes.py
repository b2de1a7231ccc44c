"""Hysteresis: turn a run of bad windows or detections into one episode.

A statistic that hovers around its threshold would otherwise alert on every
other window. An episode opens once and resolves once:

>>> from driftstream.core.settings import EpisodeSettings
>>> tracker = WindowEpisodes(EpisodeSettings(resolve_windows=2, resolve_ratio=0.8))
>>> [tracker.observe("x|psi|baseline", v, 0.1, True) for v in [0.05, 0.2, 0.09, 0.3, 0.05, 0.01]]
[None, 'drift', None, None, None, 'resolved']

A value of 0.09 is under the threshold but over ``0.1 * 0.8``, so it does
not count towards resolving the episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from driftstream.core.findings import DRIFT, RESOLVED
from driftstream.core.settings import EpisodeSettings
from driftstream.core.state import STATE_VERSION, StatePath, StateReader
from driftstream.core.stats import beyond


class WindowEpisodes:
    """Open/resolved state per windowed statistic, keyed by a plain string."""

    def __init__(self, settings: EpisodeSettings) -> None:
        self.settings = settings
        self._calm: dict[str, int] = {}  # open episodes -> calm windows in a row

    def is_open(self, key: str) -> bool:
        return key in self._calm

    def observe(
        self, key: str, value: float, threshold: float, higher_is_drift: bool
    ) -> str | None:
        """Feed one window's value; returns ``"drift"``, ``"resolved"`` or None."""
        if key not in self._calm:
            if beyond(value, threshold, higher_is_drift):
                self._calm[key] = 0
                return DRIFT
            return None
        if math.isnan(value):
            return None
        ratio = self.settings.resolve_ratio
        resolve_level = threshold * ratio if higher_is_drift else threshold / ratio
        if beyond(value, resolve_level, higher_is_drift):
            self._calm[key] = 0
            return None
        self._calm[key] += 1
        if self._calm[key] >= self.settings.resolve_windows:
            del self._calm[key]
            return RESOLVED
        return None

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "window_episodes",
            "version": STATE_VERSION,
            "open": dict(sorted(self._calm.items())),
        }

    @classmethod
    def from_state(
        cls, settings: EpisodeSettings, state: Mapping[str, Any], at: StatePath | None = None
    ) -> WindowEpisodes:
        """Rebuild episodes saved by :meth:`to_state`; ValueError names the key at fault."""
        reader = StateReader(state, "window_episodes", ["open"], at or StatePath("episodes"))
        episodes = cls(settings)
        episodes._calm = reader.count_map("open")
        return episodes


class DetectorEpisodes:
    """Groups detections less than ``detector_quiet_events`` apart into one episode.

    Positions are global event numbers, so the result does not depend on how
    the stream was cut into batches.

    >>> from driftstream.core.settings import EpisodeSettings
    >>> tracker = DetectorEpisodes(EpisodeSettings(detector_quiet_events=100))
    >>> tracker.advance("x|adwin", [10, 50, 400], end=1000)
    [('drift', 10), ('resolved', 150), ('drift', 400), ('resolved', 500)]
    """

    def __init__(self, settings: EpisodeSettings) -> None:
        self.settings = settings
        self._last: dict[str, int] = {}  # open episodes -> last detection

    def advance(self, key: str, detections: list[int], end: int) -> list[tuple[str, int]]:
        """Events up to ``end`` (exclusive) seen; returns (kind, position) changes."""
        quiet = self.settings.detector_quiet_events
        changes: list[tuple[str, int]] = []
        for position in detections:
            last = self._last.get(key)
            if last is not None and position - last >= quiet:
                changes.append((RESOLVED, last + quiet))
                last = None
            if last is None:
                changes.append((DRIFT, position))
            self._last[key] = position
        last = self._last.get(key)
        if last is not None and last + quiet < end:
            changes.append((RESOLVED, last + quiet))
            del self._last[key]
        return changes

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "detector_episodes",
            "version": STATE_VERSION,
            "open": dict(sorted(self._last.items())),
        }

    @classmethod
    def from_state(
        cls, settings: EpisodeSettings, state: Mapping[str, Any], at: StatePath | None = None
    ) -> DetectorEpisodes:
        """Rebuild episodes saved by :meth:`to_state`; ValueError names the key at fault."""
        reader = StateReader(state, "detector_episodes", ["open"], at or StatePath("episodes"))
        episodes = cls(settings)
        episodes._last = reader.count_map("open")
        return episodes
