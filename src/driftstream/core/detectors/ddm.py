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

from driftstream.core.detectors._state import (
    STATE_VERSION,
    FloatArray,
    IntArray,
    StatePath,
    StateReader,
    loop_until_drift,
)

_PARAMS = ("warm_start", "warning_threshold", "drift_threshold")
_RUNNING = (
    "n_seen",
    "n_errors",
    "p_min",
    "s_min",
    "warning_detected",
    "drift_detected",
    "n_detections",
)
# Work past a detection is thrown away, so steps start small after a reset
# and double while nothing is found; below _LOOP_STEP points a scalar loop
# beats numpy's per-call cost.
_FIRST_STEP = 256
_MIN_STEP = 16
_MAX_STEP = 8192
_LOOP_STEP = 32


class DDM:
    """Drift Detection Method (Gama et al., 2004) on errors (1) and successes (0).

    With ``p`` the error rate since the last reset, ``n`` the points seen and
    ``s = sqrt(p (1 - p) / n)``, the detector remembers ``p_min`` and
    ``s_min`` at the point where ``p + s`` was lowest (latest on ties), once
    more than ``warm_start`` points were seen. It warns while ``p + s``
    exceeds ``p_min + warning_threshold * s_min`` and detects drift when
    ``p + s`` exceeds ``p_min + drift_threshold * s_min``; a detection clears
    the warning. Only a rising error rate is detected. As in river 0.26.1,
    the update after a detection starts from a fresh detector.

    Arithmetic: river keeps ``p`` as a running mean, ``p += (x - p) / n``,
    a sequential float recurrence no numpy operation reproduces. Here ``p``
    is the error count divided by ``n``, both exact integers, so ``p`` is the
    correctly rounded rate; every other step (``s``, ``p + s``, the
    thresholds) is river's, in river's order. ``update`` and ``update_many``
    share this arithmetic and agree bit for bit, however the stream is
    batched. River's recurrence drifts from the exact rate by about 1e-14
    (relative), so detections and warnings equal river's on all golden
    streams; one could differ only if ``p + s`` landed within that gap of a
    threshold or of the running minimum.

    Parameters
    ----------
    warm_start
        Points needed since the last reset before ``p_min`` is tracked and
        drift can be detected.
    warning_threshold
        Standard deviations above ``p_min`` that start a warning.
    drift_threshold
        Standard deviations above ``p_min`` that detect drift.

    Examples
    --------
    >>> rng = np.random.default_rng(42)
    >>> stream = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.3])
    >>> ddm = DDM()
    >>> for i, x in enumerate(stream):
    ...     if ddm.update(x).drift_detected:
    ...         print(f"drift at index {i}")
    drift at index 1243
    >>> DDM().update_many(stream)
    array([1243])
    """

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        _check_params(warm_start, warning_threshold, drift_threshold)
        self.warm_start = warm_start
        self.warning_threshold = warning_threshold
        self.drift_threshold = drift_threshold
        self._detections = 0
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._errors = 0
        # None until more than warm_start points were seen, as in river.
        self._p_min: float | None = None
        self._s_min: float | None = None
        self._warning = False
        self._drift = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift

    @property
    def warning_detected(self) -> bool:
        """Whether the last update left the detector in the warning zone."""
        return self._warning

    @property
    def n_detections(self) -> int:
        """Detections since the detector was made (kept across resets and restores)."""
        return self._detections

    @property
    def n_seen(self) -> int:
        """Points seen since the last reset."""
        return self._n

    @property
    def error_rate(self) -> float:
        """The error rate ``p`` since the last reset (0.0 before any point)."""
        return self._errors / self._n if self._n else 0.0

    # -- one point at a time -------------------------------------------------

    def update(self, x: float) -> Self:
        """Add one point, 1 for an error and 0 for a success; reset first after a detection."""
        value = float(x)
        if value != 0.0 and value != 1.0:
            raise ValueError(_input_error(value))
        if self._drift:
            self._reset()
        self._n += 1
        self._errors += int(value)
        if self._n <= self.warm_start:
            return self
        n = float(self._n)
        p = self._errors / n
        s = math.sqrt(p * (1.0 - p) / n)
        ps = p + s
        if self._p_min is None or self._s_min is None or ps <= self._p_min + self._s_min:
            self._p_min, self._s_min = p, s
        self._warning = ps > self._p_min + self.warning_threshold * self._s_min
        if ps > self._p_min + self.drift_threshold * self._s_min:
            self._drift, self._warning = True, False
            self._detections += 1
        return self

    # -- batches -------------------------------------------------------------

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed ``values`` in order; return the positions (0-based) that detected drift."""
        x = _error_array(values)
        hits: list[int] = []
        pos, step = 0, _FIRST_STEP
        while pos < x.size:
            if self._drift:
                self._reset()
                step = self._step_after_reset(hits)
            # Points still warming up cannot detect anything: they only count.
            quiet = min(max(0, self.warm_start - self._n), x.size - pos)
            if quiet:
                self._n += quiet
                self._errors += int(np.count_nonzero(x[pos : pos + quiet]))
                pos += quiet
                continue
            chunk = x[pos : pos + step]
            pos += loop_until_drift(self, chunk) if step <= _LOOP_STEP else self._advance(chunk)
            if self._drift:
                hits.append(pos - 1)
            else:
                step = min(2 * step, _MAX_STEP)
        return np.asarray(hits, dtype=np.int64)

    def _step_after_reset(self, hits: list[int]) -> int:
        """Twice the points examined between the last two detections, if known.

        Each run between detections starts with ``warm_start`` points that
        only count, so they are left out of the estimate.
        """
        if len(hits) < 2:
            return _FIRST_STEP
        examined = hits[-1] - hits[-2] - self.warm_start
        return min(_MAX_STEP, max(_MIN_STEP, 2 * examined))

    def _advance(self, x: FloatArray) -> int:
        """Consume ``x`` (all past the warm start) up to its first detection; return how many."""
        steps = np.arange(1, x.size + 1, dtype=np.float64)
        # Counts below 2**53 are exact as floats, so p is k / n correctly rounded.
        n = self._n + steps
        errors = self._errors + np.cumsum(x)
        p = errors / n
        s = np.sqrt(p * (1.0 - p) / n)
        ps = p + s
        if self._p_min is None or self._s_min is None:
            p_min0, s_min0, ps_min0 = 0.0, 0.0, math.inf
        else:
            p_min0, s_min0 = self._p_min, self._s_min
            ps_min0 = p_min0 + s_min0
        # river stores p_min + s_min, which rounds to the very p + s it came
        # from, so a point becomes the minimum exactly when it equals the
        # running minimum of p + s.
        lowest = np.minimum.accumulate(np.concatenate(([ps_min0], ps)))[1:]
        marks = np.where(ps == lowest, np.arange(x.size), -1)
        last = np.maximum.accumulate(marks)
        held = last >= 0
        p_min = np.where(held, p[last], p_min0)
        s_min = np.where(held, s[last], s_min0)
        drift = ps > p_min + self.drift_threshold * s_min
        found = np.flatnonzero(drift)
        k = int(found[0]) if found.size else x.size - 1
        self._n += k + 1
        self._errors = int(errors[k])
        self._p_min, self._s_min = float(p_min[k]), float(s_min[k])
        self._drift = bool(found.size)
        if self._drift:
            self._warning = False
            self._detections += 1
        else:
            self._warning = bool(ps[k] > p_min[k] + self.warning_threshold * s_min[k])
        return k + 1

    # -- state ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Parameters and running state as JSON-able plain data."""
        return {
            "kind": "ddm",
            "version": STATE_VERSION,
            "warm_start": int(self.warm_start),
            "warning_threshold": float(self.warning_threshold),
            "drift_threshold": float(self.drift_threshold),
            "n_seen": self._n,
            "n_errors": self._errors,
            "p_min": self._p_min,
            "s_min": self._s_min,
            "warning_detected": self._warning,
            "drift_detected": self._drift,
            "n_detections": self._detections,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> DDM:
        """Rebuild a detector saved by ``to_state``; ValueError names the key at fault."""
        reader = StateReader(state, "ddm", _PARAMS + _RUNNING, at)
        warm_start = reader.count("warm_start")
        warning_threshold = reader.number("warning_threshold")
        drift_threshold = reader.number("drift_threshold")
        try:
            detector = cls(warm_start, warning_threshold, drift_threshold)
        except ValueError as err:
            reader.fail(None, f"holds invalid parameters: {err}")
        n = detector._n = reader.count("n_seen")
        errors = detector._errors = reader.count("n_errors")
        if errors > n:
            reader.fail("n_errors", f"must not exceed n_seen ({n}), got {errors}")
        detector._p_min = p_min = reader.optional_number("p_min")
        detector._s_min = s_min = reader.optional_number("s_min")
        # p_min and s_min exist exactly once more than warm_start points were seen.
        tracked = n > warm_start
        for key, value, top in (("p_min", p_min, 1.0), ("s_min", s_min, 0.5)):
            if (value is None) == tracked:
                need = "a number" if tracked else "null"
                reader.fail(key, f"must be {need} with n_seen {n} and warm_start {warm_start}")
            if value is not None and not 0.0 <= value <= top:
                reader.fail(key, f"must lie in [0, {top:g}], got {value!r}")
        detector._warning = reader.flag("warning_detected")
        detector._drift = reader.flag("drift_detected")
        if detector._warning and detector._drift:
            reader.fail("warning_detected", "must be false when drift_detected is true")
        if (detector._warning or detector._drift) and not tracked:
            reader.fail(None, f"cannot warn or detect with n_seen {n} <= warm_start {warm_start}")
        detector._detections = reader.count("n_detections")
        return detector


def _error_array(values: npt.ArrayLike) -> FloatArray:
    """``values`` as a 1-d float64 array of 0.0 and 1.0, refusing anything else."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"DDM input must be 1-d, got shape {array.shape}"
        raise ValueError(msg)
    # NaN fails both comparisons.
    wrong = (array != 0.0) & (array != 1.0)
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        raise ValueError(_input_error(float(array[bad]), f" at position {bad}"))
    return array


def _input_error(value: float, where: str = "") -> str:
    return f"DDM input must be 0 or 1 (a success or an error), got {value!r}{where}"


def _check_params(warm_start: int, warning_threshold: float, drift_threshold: float) -> None:
    if isinstance(warm_start, bool) or not isinstance(warm_start, int) or warm_start < 0:
        msg = f"DDM parameter 'warm_start' must be an integer >= 0, got {warm_start!r}"
        raise ValueError(msg)
    for name, value in (
        ("warning_threshold", warning_threshold),
        ("drift_threshold", drift_threshold),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"DDM parameter {name!r} must be a number, got {value!r}"
            raise ValueError(msg)
        if not (math.isfinite(value) and value > 0):
            msg = f"DDM parameter {name!r} must be positive and finite, got {value!r}"
            raise ValueError(msg)
