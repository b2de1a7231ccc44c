"""Bin assignment shared by baseline profiles and live sketches.

Numeric features are summarised on the bin edges of their baseline. A profile
stores the *inner* edges ``e_0 < e_1 < ... < e_{k-1}``; together with two
open-ended outer bins they make ``k + 1`` bins::

    bin 0      : x <  e_0
    bin i      : e_{i-1} <= x < e_i      (1 <= i <= k-1)
    bin k      : x >= e_{k-1}

Live values outside the training range therefore still land in a bin, which
is exactly where drift shows up first.

>>> import numpy as np
>>> edges = np.array([0.0, 1.0, 2.0])
>>> bin_counts(edges, np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 9.0]))
array([1, 2, 1, 2])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def validate_edges(edges: npt.ArrayLike) -> FloatArray:
    """Return ``edges`` as a float64 array, or raise if they cannot be bin edges."""
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        msg = f"bin edges must be a non-empty 1-d sequence, got shape {array.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(array)):
        msg = "bin edges must be finite"
        raise ValueError(msg)
    if array.size > 1 and not np.all(np.diff(array) > 0):
        msg = "bin edges must be strictly increasing"
        raise ValueError(msg)
    return array


def bin_index(edges: FloatArray, values: FloatArray) -> IntArray:
    """Bin number of each finite value (see the module docstring for the rule)."""
    return np.searchsorted(edges, values, side="right").astype(np.int64)


def bin_counts(edges: FloatArray, values: FloatArray) -> IntArray:
    """Counts per bin (``len(edges) + 1`` of them) of the finite ``values``."""
    return np.bincount(bin_index(edges, values), minlength=edges.size + 1).astype(np.int64)
