"""Walking and editing saved states by key path, for the state-refusal tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def dotted(path: tuple[Any, ...]) -> str:
    """A key path as errors name it: ``features.amount.counts[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += part if not text else f".{part}"
    return text


def walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of a state; lists contribute their first entry only."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list) and value:
        yield from walk(value[0], (*path, 0))


def edited(state: Any, path: tuple[Any, ...], value: Any = None, *, delete: bool = False) -> Any:
    """A deep copy of ``state`` with the value at ``path`` replaced (or deleted)."""
    state = copy.deepcopy(state)
    holder = state
    for part in path[:-1]:
        holder = holder[part]
    if delete:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return state
