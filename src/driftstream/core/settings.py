"""Frozen, plain settings for one model's monitors.

The YAML config (``driftstream.config``) is validated by pydantic and turned
into these dataclasses, so the core never depends on pydantic or on files.

Detector defaults differ from river's on purpose. Sequential detectors see
values standardised by the baseline (unit variance, see ``monitor``). On
such data river's Page-Hinkley defaults (``alpha=1 - 1e-4, delta=0.005,
threshold=50``) raise about 60 false alarms per 100k points: the fading
factor makes the cumulative sum mean-reverting, with a stationary spread of
about 70 standard deviations, so excursions of 50 are routine. With
``alpha=1``, ``delta=0.1`` (half of the smallest shift worth paging for,
0.2 sd) and ``threshold=75``, no false alarm was seen in 10M no-drift points
(normal and uniform, 1M-point streams), while a 0.25 sd shift is still
caught within about 600 events (``threshold=50`` gave about one false alarm
per million). ADWIN at river's ``delta=0.002`` raised 3 false alarms in
10M points; that is minutes apart for ten features at 10k events/s, so the
monitors use ``delta=1e-5``: none in 10M, at the cost of detecting a
0.25 sd shift after about 550 events instead of 300. Over 100M no-drift
points each detector, with these defaults, raised one false alarm: about
one per feature per three hours at 10k events/s. ADWIN checks its window
every ``clock=128`` points rather than river's 32: on 5,000-point batches
that makes the monitor about a third faster, adds about 100 events of
delay, and raised no false alarm in 20M points.

The multi-chart CUSUM (``detectors.cusum``) is the fastest of the three
(about 100 events after a 0.5 sd shift, 30 after 1 sd) and the only one
with a false-alarm rate worth budgeting: 0.02 to 0.03 per 100k points at
its calibrated threshold of 14. Its configured threshold is therefore a
floor: with a budget, the monitor raises it at every window close to what
the budget leaves each event (``ModelMonitor._close_window``,
``cusum.threshold_for_rate``).

Chi-square is not a default statistic: its p-value threshold *is* a false
alarm rate per window (0.1% of windows at alpha 0.001), which at production
window rates means an alert every few minutes. It stays available per
feature for low-volume models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from driftstream.core.budget import Budget
from driftstream.core.detectors.cusum import (
    DEFAULT_MIN_INSTANCES,
    DEFAULT_SHIFTS,
    DEFAULT_THRESHOLD,
)
from driftstream.core.quality import QualitySettings

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)

ADWIN = "adwin"
PAGE_HINKLEY = "page_hinkley"
CUSUM = "cusum"
DETECTORS = (ADWIN, PAGE_HINKLEY, CUSUM)

# Pseudo-feature names under which the model's own outputs are monitored.
PREDICTION = "__prediction__"
SCORE = "__score__"

DEFAULT_ADWIN: Mapping[str, float] = MappingProxyType(
    {"delta": 1e-5, "clock": 128, "max_buckets": 5, "min_window_length": 5, "grace_period": 10}
)
DEFAULT_PAGE_HINKLEY: Mapping[str, float | str] = MappingProxyType(
    {"min_instances": 30, "delta": 0.1, "threshold": 75.0, "alpha": 1.0, "mode": "both"}
)
DEFAULT_CUSUM: Mapping[str, float | tuple[float, ...]] = MappingProxyType(
    {
        "shifts": DEFAULT_SHIFTS,
        "threshold": DEFAULT_THRESHOLD,
        "min_instances": DEFAULT_MIN_INSTANCES,
    }
)
DEFAULT_NUMERIC_STATISTICS = ("psi", "js", "ks", "wasserstein")
DEFAULT_CATEGORICAL_STATISTICS = ("js", "linf", "psi")


@dataclass(frozen=True)
class StatisticSetting:
    """One windowed statistic with its alert and critical thresholds."""

    name: str
    threshold: float
    critical: float


@dataclass(frozen=True)
class FeatureSettings:
    """What to watch on one feature (or on the prediction / score)."""

    name: str
    kind: str
    statistics: tuple[StatisticSetting, ...]
    detectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowSettings:
    """Tumbling windows, by event count or by event time.

    ``min_count`` keeps tiny time windows (a quiet night) from being judged:
    a statistic over a handful of events is noise.
    """

    kind: str = "count"
    size: int = 5000
    seconds: float = 300.0
    min_count: int = 200


@dataclass(frozen=True)
class EpisodeSettings:
    """Hysteresis that turns a run of bad windows into one episode.

    A drift episode opens on the first window whose statistic crosses its
    threshold. It resolves only after ``resolve_windows`` windows in a row
    sit on the good side of ``threshold * resolve_ratio`` (for p-values,
    ``threshold / resolve_ratio``). A detector episode resolves after
    ``detector_quiet_events`` events without another detection.
    """

    resolve_windows: int = 2
    resolve_ratio: float = 0.8
    detector_quiet_events: int = 20000


@dataclass(frozen=True)
class MonitorSettings:
    """Everything one ``ModelMonitor`` needs besides its baseline."""

    model_id: str
    features: tuple[FeatureSettings, ...]
    model_version: str = ""
    window: WindowSettings = field(default_factory=WindowSettings)
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)
    adwin: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ADWIN))
    page_hinkley: Mapping[str, float | str] = field(
        default_factory=lambda: dict(DEFAULT_PAGE_HINKLEY)
    )
    cusum: Mapping[str, float | tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CUSUM)
    )
    compare_previous: bool = False
    category_cap: int = 50
    quality: QualitySettings | None = field(default_factory=QualitySettings)  # None: no checks
    # The model's false-alarm budget (None: fixed thresholds only), and how
    # many monitors share it at most (versions x segment values x roles).
    budget: Budget | None = None
    budget_monitors: int = 1


@dataclass(frozen=True)
class ComparisonSettings:
    """Everything one ``VersionComparison`` needs besides its baseline.

    ``columns`` are the model's outputs (``__prediction__`` and/or
    ``__score__``) with the statistics and thresholds drift uses; their
    detectors play no part. Windows are ``seconds`` of event time, and two
    versions are compared in a window only if each has ``min_count`` events
    in it. ``champion`` None picks, in each window, the version with the
    most events (ties to the smallest name). At most ``max_versions``
    versions are held; rows of versions beyond it in one window are counted
    and ignored.
    """

    model_id: str
    columns: tuple[FeatureSettings, ...]
    seconds: float = 300.0
    min_count: int = 500
    champion: str | None = None
    max_versions: int = 8
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)
    category_cap: int = 50
