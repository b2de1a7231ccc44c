"""The one check every ``from_state`` starts with.

Saved state is plain JSON that may come back from Redis written by another
release, or damaged. Before trusting any field, a restore checks that it
holds a mapping of the expected ``kind`` and ``version`` with every key it
needs, and the error names the first key at fault.

>>> check_state({"kind": "adwin", "version": 1}, "adwin", ["width"])
Traceback (most recent call last):
...
ValueError: adwin state is missing key 'width'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STATE_VERSION = 1


def check_state(state: Any, kind: str, keys: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the first wrong or missing key of a saved state."""
    if not isinstance(state, Mapping):
        msg = f"{kind} state must be a mapping, got {type(state).__name__}"
        raise ValueError(msg)
    # kind and version first: a state of another version may lack the keys.
    for key, expected in (("kind", kind), ("version", STATE_VERSION)):
        if key not in state:
            msg = f"{kind} state is missing key {key!r}"
            raise ValueError(msg)
        if state[key] != expected:
            msg = f"{kind} state key {key!r} must be {expected!r}, got {state[key]!r}"
            raise ValueError(msg)
    for key in keys:
        if key not in state:
            msg = f"{kind} state is missing key {key!r}"
            raise ValueError(msg)
