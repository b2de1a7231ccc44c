"""Strict readers for saved state: what every ``from_state`` goes through.

Saved state is plain JSON that may come back from Redis written by another
release, edited by hand, or damaged. A restore reads it through a
:class:`StateReader`, which refuses anything a healthy ``to_state`` could
not have written, before a single field is trusted:

- a value that is not a mapping, or lacks ``kind``/``version`` or holds
  another kind or version;
- a missing key, and a key nobody reads (a typo, or a field of another
  release);
- NaN, infinities or out-of-range integers where a finite number is
  needed (JSON writers turn ``inf`` into ``null``, so ``None`` counts too);
- bools where numbers or counts are needed (``True`` is an ``int`` in
  Python, never in a state written here);
- negative counts, and wrong types anywhere.

Every error names the full key path from the outermost state, so a bad
field deep inside a monitor reads
``monitor state key 'features.amount.sketch.sumsq' must be a finite number,
got None``. Nested states are read with a :class:`StatePath` handed down by
their owner.

>>> reader = StateReader({"kind": "adwin", "version": 1}, "adwin", ["width"])
Traceback (most recent call last):
...
ValueError: adwin state is missing key 'width'
>>> at = StatePath("monitor", ("features", "x", "sketch"))
>>> StateReader({"kind": "numeric", "version": 1, "sum": None}, "numeric", ["sum"], at).number(
...     "sum"
... )
Traceback (most recent call last):
...
ValueError: monitor state key 'features.x.sketch.sum' must be a finite number, got None
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

STATE_VERSION = 1

MAX_COUNT = 2**53
"""Largest count or integer a state may hold: exact as a float, so arithmetic mixing
counts and floats (as the detectors do) stays exact."""

_SHOWN = 60  # characters of a bad value quoted in an error


@dataclass(frozen=True)
class StatePath:
    """Where a state sits: the outermost state's name and the keys leading here.

    >>> (StatePath("monitor") / "features" / "amount").describe("sketch")
    "'features.amount.sketch'"
    """

    owner: str
    keys: tuple[str, ...] = ()

    def __truediv__(self, key: object) -> StatePath:
        return StatePath(self.owner, (*self.keys, str(key)))

    def describe(self, key: object = None) -> str:
        """The dotted key path, quoted; list positions read ``counts[3]``."""
        keys = self.keys if key is None else (*self.keys, str(key))
        text = ""
        for part in keys:
            text += part if part.startswith("[") or not text else "." + part
        return repr(text)

    def fail(self, key: object, problem: str) -> NoReturn:
        """Raise ``ValueError`` saying ``problem`` about ``key`` (None: this state itself)."""
        if key is None and not self.keys:
            self.fail_whole(problem)
        msg = f"{self.owner} state key {self.describe(key)} {problem}"
        raise ValueError(msg)

    def fail_whole(self, problem: str) -> NoReturn:
        """Raise ``ValueError`` saying ``problem`` about the outermost state."""
        msg = f"{self.owner} state {problem}"
        raise ValueError(msg)

    def wrong(self, key: object, expected: str, value: object) -> NoReturn:
        """Raise ``ValueError``: ``key`` holds ``value`` where ``expected`` belongs."""
        self.fail(key, f"must be {expected}, got {_show(value)}")


def _show(value: object) -> str:
    """A short ``repr`` of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _is_count(value: object, minimum: int = 0) -> bool:
    """An ``int`` (not a bool) in ``[minimum, MAX_COUNT]``."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_COUNT


def _is_finite_number(value: object) -> bool:
    """An ``int`` or ``float`` (not a bool) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the float range
        return False


class StateReader:
    """One saved state mapping, checked as a whole, then read key by key.

    ``kind`` None reads a plain mapping with no ``kind``/``version`` (a part
    of its owner's state); ``keys`` are all the other keys it must hold, and
    the only ones it may. ``version`` is the layout version the state must
    carry: the shared one unless a class moved its own on.
    """

    def __init__(
        self,
        state: object,
        kind: str | None,
        keys: Iterable[str],
        at: StatePath | None = None,
        version: int = STATE_VERSION,
    ) -> None:
        self.at = at if at is not None else StatePath(kind or "saved")
        if not isinstance(state, Mapping):
            self.at.fail(None, f"must be a mapping, got {type(state).__name__}")
        self.state: Mapping[str, Any] = state
        expected = tuple(keys)
        if kind is not None:
            # kind and version first: a state of another version may hold other keys.
            self._check_header(kind, version)
            expected = ("kind", "version", *expected)
        for key in expected:
            if key not in state:
                self.at.fail_whole(f"is missing key {self.at.describe(key)}")
        for key in state:
            if key not in expected:
                self.at.fail_whole(f"has unknown key {self.at.describe(key)}")

    def _check_header(self, kind: str, version: int) -> None:
        for key, expected in (("kind", kind), ("version", version)):
            if key not in self.state:
                self.at.fail_whole(f"is missing key {self.at.describe(key)}")
            value = self.state[key]
            if type(value) is not type(expected) or value != expected:
                self.at.wrong(key, repr(expected), value)

    def child(self, key: str) -> StatePath:
        """The path of a nested state held under ``key``."""
        return self.at / key

    def fail(self, key: str | None, problem: str) -> NoReturn:
        self.at.fail(key, problem)

    def raw(self, key: str) -> Any:
        """The value as stored, for a nested state its owner reads itself."""
        return self.state[key]

    def number(self, key: str) -> float:
        """A finite number (int or float, never a bool, NaN or infinity)."""
        return _number(self.state[key], self.at, key)

    def optional_number(self, key: str) -> float | None:
        """A finite number, or None where the writer had nothing (or an infinity) to save."""
        value = self.state[key]
        return None if value is None else _number(value, self.at, key)

    def count(self, key: str, minimum: int = 0) -> int:
        """An int in ``[minimum, MAX_COUNT]``, never a bool."""
        return _count(self.state[key], self.at, key, minimum)

    def optional_integer(self, key: str) -> int | None:
        """None or an int of magnitude at most ``MAX_COUNT``, negative allowed."""
        value = self.state[key]
        return None if value is None else _count(value, self.at, key, -MAX_COUNT)

    def flag(self, key: str) -> bool:
        """A real bool (``0`` and ``1`` are refused)."""
        value = self.state[key]
        if not isinstance(value, bool):
            self.at.wrong(key, "true or false", value)
        return value

    def text(self, key: str) -> str:
        value = self.state[key]
        if not isinstance(value, str):
            self.at.wrong(key, "a string", value)
        return value

    def array(self, key: str, size: int | None = None) -> list[Any]:
        """A list, of exactly ``size`` entries if given."""
        value = self.state[key]
        if not isinstance(value, list):
            self.at.wrong(key, "a list", value)
        if size is not None and len(value) != size:
            self.at.fail(key, f"must be a list of {size} entries, got {len(value)}")
        return value

    def numbers(self, key: str, size: int | None = None) -> list[float]:
        """A list of finite numbers; an error names the entry at fault."""
        at = self.child(key)
        return [_number(v, at, f"[{i}]") for i, v in enumerate(self.array(key, size))]

    def number_rows(self, key: str) -> list[list[float]]:
        """A list of lists of finite numbers."""
        at = self.child(key)
        rows = []
        for i, row in enumerate(self.array(key)):
            if not isinstance(row, list):
                at.wrong(f"[{i}]", "a list", row)
            rows.append([_number(v, at / f"[{i}]", f"[{j}]") for j, v in enumerate(row)])
        return rows

    def counts(self, key: str, size: int | None = None) -> list[int]:
        """A list of counts."""
        at = self.child(key)
        return [_count(v, at, f"[{i}]", 0) for i, v in enumerate(self.array(key, size))]

    def texts(self, key: str) -> list[str]:
        at = self.child(key)
        values = self.array(key)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                at.wrong(f"[{i}]", "a string", value)
        return list(values)

    def mapping(self, key: str) -> Mapping[str, Any]:
        """A mapping with str keys; its values are for the caller to read."""
        value = self.state[key]
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.at.wrong(key, "a mapping with string keys", value)
        return value

    def count_map(self, key: str) -> dict[str, int]:
        """A mapping of str to counts."""
        at = self.child(key)
        return {name: _count(v, at, name, 0) for name, v in self.mapping(key).items()}


def _number(value: object, at: StatePath, key: str) -> float:
    if not _is_finite_number(value):
        at.wrong(key, "a finite number", value)
    return float(value)  # type: ignore[arg-type]


def _count(value: object, at: StatePath, key: str, minimum: int) -> int:
    if not _is_count(value, minimum):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_COUNT:
            at.wrong(key, "at most 2**53", value)
        at.wrong(key, "an int" if minimum < 0 else f"an int >= {minimum}", value)
    return int(value)  # type: ignore[call-overload]


def read_kind(state: object, kinds: Iterable[str], at: StatePath) -> str:
    """The ``kind`` of a state that may be one of several ``kinds``, for dispatching."""
    if not isinstance(state, Mapping):
        at.fail(None, f"must be a mapping, got {type(state).__name__}")
    names = sorted(kinds)
    kind = state.get("kind")
    if not isinstance(kind, str) or kind not in names:
        at.wrong("kind", f"one of {names}", kind)
    return kind
