"""DDM, the Drift Detection Method, for a stream of 0/1 errors.

Gama, J., Medas, P., Castillo, G., Rodrigues, P. (2004). Learning with
drift detection. SBIA 2004, LNCS 3171, pp. 286-295.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftstream.core.detectors._state import STATE_VERSION, IntArray, StatePath, StateReader

_PARAMS = ("warm_start", "warning_threshold", "drift_threshold")
_RUNNING = ("n_seen", "mean", "p_min", "s_min", "ps_min", "warning_detected", "drift_detected")


class DDM:
    """Drift Detection Method (Gama et al., 2004) on a stream of errors (1) and successes (0).

    With ``p`` the error rate so far and ``s = sqrt(p (1 - p) / n)``, it
    remembers ``p_min`` and ``s_min`` where ``p + s`` was lowest, once more
    than ``warm_start`` points were seen. It warns while ``p + s`` exceeds
    ``p_min + warning_threshold * s_min`` and detects a drift past
    ``p_min + drift_threshold * s_min``; the update after a detection starts
    over. Only a rising error rate is detected.

    The arithmetic is river 0.26's, step for step (the running mean is
    ``mean += (x - mean) / n``, whose rounding no vectorised form repeats),
    so detections and warnings equal ``river.drift.binary.DDM``'s exactly;
    ``update_many`` runs the same steps in a tight loop.

    >>> rng = np.random.default_rng(42)
    >>> stream = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.3])
    >>> DDM().update_many(stream)
    array([1243])
    """

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        if isinstance(warm_start, bool) or not isinstance(warm_start, int) or warm_start < 0:
            msg = f"warm_start must be a non-negative integer, got {warm_start!r}"
            raise ValueError(msg)
        for name, value in (
            ("warning_threshold", warning_threshold),
            ("drift_threshold", drift_threshold),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                msg = f"{name} must be a positive finite number, got {value!r}"
                raise ValueError(msg)
        self.warm_start = warm_start
        self.warning_threshold = float(warning_threshold)
        self.drift_threshold = float(drift_threshold)
        self._detections = 0
        self._reset()
        self._warning = False
        self._drift = False

    def _reset(self) -> None:
        self._n = 0.0
        self._mean = 0.0
        self._p_min: float | None = None
        self._s_min: float | None = None
        self._ps_min = math.inf

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def warning_detected(self) -> bool:
        return self._warning

    @property
    def n_detections(self) -> int:
        return self._detections

    @property
    def error_rate(self) -> float:
        return self._mean

    def update(self, x: float) -> Self:
        """Feed one point: 1 for an error, 0 for a success."""
        self._run(_checked(np.array([x], dtype=np.float64)))
        return self

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed a batch; returns the positions (in ``values``) where drift was detected."""
        return self._run(_checked(np.asarray(values, dtype=np.float64).ravel()))

    def _run(self, values: npt.NDArray[np.float64]) -> IntArray:
        hits = []
        n, mean = self._n, self._mean
        p_min, s_min, ps_min = self._p_min, self._s_min, self._ps_min
        warning, drift = self._warning, self._drift
        warm, warn_at, drift_at = self.warm_start, self.warning_threshold, self.drift_threshold
        sqrt = math.sqrt
        for i, x in enumerate(values.tolist()):
            if drift:
                n, mean, p_min, s_min, ps_min = 0.0, 0.0, None, None, math.inf
            n += 1.0
            mean += (1.0 / n) * (x - mean)
            s = sqrt(mean * (1 - mean) / n)
            drift = False
            if n > warm:
                if mean + s <= ps_min:
                    p_min, s_min = mean, s
                    ps_min = p_min + s_min
                assert p_min is not None and s_min is not None
                warning = mean + s > p_min + warn_at * s_min
                if mean + s > p_min + drift_at * s_min:
                    drift, warning = True, False
                    hits.append(i)
        self._n, self._mean = n, mean
        self._p_min, self._s_min, self._ps_min = p_min, s_min, ps_min
        self._warning, self._drift = warning, drift
        self._detections += len(hits)
        return np.array(hits, dtype=np.int64)

    def to_state(self) -> dict[str, Any]:
        """Parameters and running state as JSON-able plain data."""
        return {
            "kind": "ddm",
            "version": STATE_VERSION,
            "warm_start": self.warm_start,
            "warning_threshold": self.warning_threshold,
            "drift_threshold": self.drift_threshold,
            "n_seen": int(self._n),
            "mean": self._mean,
            "p_min": self._p_min,
            "s_min": self._s_min,
            # JSON has no infinity: ps_min is +inf exactly until p_min is set.
            "ps_min": None if math.isinf(self._ps_min) else self._ps_min,
            "warning_detected": self._warning,
            "drift_detected": self._drift,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> DDM:
        """Rebuild a detector saved by ``to_state``; ValueError names the key at fault."""
        reader = StateReader(state, "ddm", _PARAMS + _RUNNING, at)
        try:
            detector = cls(
                reader.count("warm_start"),
                reader.number("warning_threshold"),
                reader.number("drift_threshold"),
            )
        except ValueError as err:
            reader.fail(None, f"holds invalid parameters: {err}")
        detector._n = float(reader.count("n_seen"))
        detector._mean = reader.number("mean")
        if not 0.0 <= detector._mean <= 1.0:
            reader.fail("mean", f"must lie in [0, 1], got {detector._mean!r}")
        detector._p_min = reader.optional_number("p_min")
        detector._s_min = reader.optional_number("s_min")
        ps_min = reader.optional_number("ps_min")
        detector._ps_min = math.inf if ps_min is None else ps_min
        if (detector._p_min is None) != (ps_min is None) or (
            (detector._p_min is None) != (detector._s_min is None)
        ):
            reader.fail(None, "must hold p_min, s_min and ps_min together, or none of them")
        detector._warning = reader.flag("warning_detected")
        detector._drift = reader.flag("drift_detected")
        return detector


def _checked(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    bad = np.flatnonzero((values != 0.0) & (values != 1.0))
    if len(bad):
        position = int(bad[0])
        msg = f"DDM input must be 0 or 1, got {values[position]!r} at position {position}"
        raise ValueError(msg)
    return values
