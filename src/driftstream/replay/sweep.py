"""Parameter sweeps: ``--set KEY=V1,V2,...`` flags expanded into configs to replay.

Each flag names a config key by its dotted path, as config errors name it
(``models.fraud.window.size``), and lists the values to try, separated by
commas. Each value is read as a YAML scalar, as the config file would read
it: ``50`` is an int, ``0.5`` a float, ``true`` a bool, ``psi`` a string (a
value cannot contain a comma). The flags multiply: every combination is
one setting, the first flag varying slowest. At most ``MAX_SETTINGS``
settings run in one replay.

A model id may contain dots: walking a path, each level takes the longest
run of its parts that is a key already there. A key the file leaves out
(say ``detectors``, left at its defaults) is created, except a model id: a
path into a model the config does not have is refused. Every combination
is validated as a whole config, and a problem is reported against the
flag that caused it.

>>> sweeps = [parse_set("models.m.window.size=500,1000"), parse_set("models.m.category_cap=20")]
>>> raw = {"models": {"m": {"baseline": "m.json"}}}
>>> for setting in expand(raw, sweeps, "driftstream.yaml"):
...     print(setting.index, setting.name, setting.config.models["m"].window.size)
0 models.m.window.size=500, models.m.category_cap=20 500
1 models.m.window.size=1000, models.m.category_cap=20 1000
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftstream.config import Config, ConfigError, baselines_from, parse_config, read_config_data

__all__ = [
    "MAX_SETTINGS",
    "NO_SWEEP",
    "Setting",
    "Sweep",
    "SweepError",
    "expand",
    "load_settings",
    "parse_set",
]

# A replay runs every setting over the whole input; more than this is
# rarely meant and would take many times one replay's time.
MAX_SETTINGS = 64
NO_SWEEP = "config as given"
EXTRA = "Extra inputs are not permitted"
# pydantic's location suffix for a dict key that failed its own type.
KEY_LOC = ".[key]"


class SweepError(ValueError):
    """A ``--set`` flag that cannot be used; the message names the flag."""


@dataclass(frozen=True)
class Sweep:
    """One ``--set`` flag: a dotted key path (split as written) and its values."""

    path: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def key(self) -> str:
        """The key as written on the command line."""
        return ".".join(self.path)


@dataclass(frozen=True)
class Setting:
    """One combination of swept values: the raw config with them set, and its validation.

    ``values`` maps each flag's key (as written) to its value here; ``raw``
    is the loaded YAML data with the values in place (baseline paths as
    written); ``config`` is ``raw`` validated, baseline paths resolved as
    ``load_config`` resolves them when ``expand`` was given the config's
    directory.
    """

    index: int
    name: str
    values: dict[str, Any]
    raw: dict[str, Any]
    config: Config


# ----------------------------------------------------------------------------- parsing


def parse_set(text: str) -> Sweep:
    """Read one ``--set KEY=V1,V2,...`` argument.

    >>> parse_set("models.m.statistic=psi, js")
    Sweep(path=('models', 'm', 'statistic'), values=('psi', 'js'))
    >>> parse_set("models.m.window.size=50,0.5,true").values
    (50, 0.5, True)
    """
    key, equals, listed = text.partition("=")
    key = key.strip()
    if not equals:
        msg = f"--set {text!r}: expected KEY=V1,V2,... (no '=')"
        raise SweepError(msg)
    if not key:
        msg = f"--set {text!r}: the key before '=' is empty"
        raise SweepError(msg)
    path = tuple(key.split("."))
    if "" in path:
        msg = f"--set {text!r}: the key {key!r} has an empty part"
        raise SweepError(msg)
    if not listed.strip():
        msg = f"--set {text!r}: no values after '='"
        raise SweepError(msg)
    values = tuple(_scalar(item, n, text) for n, item in enumerate(listed.split(","), 1))
    for n, value in enumerate(values):
        if _same_value(value, values[:n]):
            msg = f"--set {text!r}: value {_show(value)} is listed twice"
            raise SweepError(msg)
    return Sweep(path, values)


def _scalar(item: str, n: int, text: str) -> Any:
    item = item.strip()
    if not item:
        msg = f"--set {text!r}: value {n} is empty"
        raise SweepError(msg)
    try:
        value = yaml.safe_load(item)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        msg = f"--set {text!r}: value {item!r} is not a YAML scalar ({problem})"
        raise SweepError(msg) from None
    if value is not None and not isinstance(value, str | int | float | bool):
        msg = f"--set {text!r}: value {item!r} is not a scalar (a number, bool or text)"
        raise SweepError(msg)
    return value


def _same_value(value: Any, earlier: Sequence[Any]) -> bool:
    # 1, 1.0 and true compare equal in Python but are different settings.
    return any(type(other) is type(value) and other == value for other in earlier)


def _show(value: Any) -> str:
    """A value as YAML writes a scalar, for names and messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ----------------------------------------------------------------------------- expanding


def load_settings(
    path: str | Path, sweeps: Sequence[Sweep], *, limit: int = MAX_SETTINGS
) -> list[Setting]:
    """Read a YAML config as ``load_config`` does and expand the sweeps over it.

    Baseline paths follow the config file, and ``DRIFTSTREAM__`` variables
    and secret files apply, as with ``load_config``.
    """
    path = Path(path)
    raw = read_config_data(path)[0]
    return expand(raw, sweeps, str(path), config_dir=path.parent, limit=limit)


def expand(
    raw: Mapping[str, Any],
    sweeps: Sequence[Sweep],
    source: str | Path = "config",
    *,
    config_dir: str | Path | None = None,
    limit: int = MAX_SETTINGS,
) -> list[Setting]:
    """Every combination of the sweeps' values over ``raw``, each validated.

    ``source`` names the config in messages. With ``config_dir``, relative
    baseline paths are taken from that directory, as ``load_config`` takes
    them from the config file's. Without sweeps there is one setting, the
    config as given; its problems raise ``ConfigError`` unchanged, since no
    flag caused them. With sweeps a problem raises ``SweepError``.
    """
    source = str(source)
    _refuse_too_many(sweeps, limit)
    keys = [_resolve(raw, sweep) for sweep in sweeps]
    _refuse_repeats(sweeps, keys)
    directory = None if config_dir is None else Path(config_dir)
    settings = []
    for index, combination in enumerate(itertools.product(*(s.values for s in sweeps))):
        # Not a mapping (an empty file, say): parse_config names the problem.
        data = copy.deepcopy(dict(raw) if isinstance(raw, Mapping) else raw)
        for sweep, key, value in zip(sweeps, keys, combination, strict=True):
            _assign(data, sweep, key, value)
        values = {sweep.key: value for sweep, value in zip(sweeps, combination, strict=True)}
        name = ", ".join(f"{key}={_show(value)}" for key, value in values.items()) or NO_SWEEP
        config = _validate(data, source, sweeps, keys, combination, name)
        if directory is not None:
            config = baselines_from(config, directory)
        settings.append(Setting(index, name, values, data, config))
    return settings


def _refuse_too_many(sweeps: Sequence[Sweep], limit: int) -> None:
    count = math.prod(len(sweep.values) for sweep in sweeps)
    if count > limit:
        sizes = " x ".join(str(len(sweep.values)) for sweep in sweeps)
        msg = (
            f"the --set flags ask for {sizes} = {count} settings; at most {limit} run in one "
            "replay (list fewer values, or split the sweep)"
        )
        raise SweepError(msg)


def _refuse_repeats(sweeps: Sequence[Sweep], keys: Sequence[tuple[str, ...]]) -> None:
    for n, key in enumerate(keys):
        if key in keys[:n]:
            earlier = sweeps[keys.index(key)]
            msg = (
                f"--set {sweeps[n].key}: the same key as --set {earlier.key}; "
                "list all its values in one flag"
            )
            raise SweepError(msg)


def _resolve(raw: Mapping[str, Any], sweep: Sweep) -> tuple[str, ...]:
    """The keys a sweep's path walks through in ``raw``, dotted keys matched longest first."""
    if not isinstance(raw, Mapping):
        msg = f"--set {sweep.key}: the config is not a mapping of keys"
        raise SweepError(msg)
    keys: list[str] = []
    # None below a key the file leaves out: nothing there to match, all is created.
    level: Mapping[str, Any] | None = raw
    parts = sweep.path
    while parts:
        existing: Mapping[str, Any] = level or {}
        taken = _longest_key(existing, parts)
        if taken == 0 and tuple(keys) == ("models",):
            models = ", ".join(sorted(existing)) or "none"
            msg = f"--set {sweep.key}: {parts[0]!r} is not a model in the config (models: {models})"
            raise SweepError(msg)
        count = taken or 1
        keys.append(".".join(parts[:count]))
        parts = parts[count:]
        level = existing.get(keys[-1])
        if parts and level is not None and not isinstance(level, Mapping):
            msg = f"--set {sweep.key}: {'.'.join(keys)} is {level!r}, not a mapping of keys"
            raise SweepError(msg)
    return tuple(keys)


def _longest_key(level: Mapping[str, Any], parts: tuple[str, ...]) -> int:
    """How many of ``parts``, joined by dots, make the longest key of ``level`` (0: none)."""
    for count in range(len(parts), 0, -1):
        if ".".join(parts[:count]) in level:
            return count
    return 0


def _assign(data: dict[str, Any], sweep: Sweep, keys: tuple[str, ...], value: Any) -> None:
    level = data
    for depth, key in enumerate(keys[:-1]):
        child = level.get(key)
        if child is None:
            # The file left this section out (or empty): its defaults apply,
            # and setting one key in it is what the flag asks for.
            child = level[key] = {}
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            msg = f"--set {sweep.key}: {where} is {child!r}, not a mapping"
            raise SweepError(msg)
        level = child
    level[keys[-1]] = value


def _validate(
    data: dict[str, Any],
    source: str,
    sweeps: Sequence[Sweep],
    keys: Sequence[tuple[str, ...]],
    combination: tuple[Any, ...],
    name: str,
) -> Config:
    try:
        return parse_config(data, source)
    except ConfigError as error:
        if not sweeps:
            raise
        msg = _explain(error, sweeps, keys, combination, source, name)
        raise SweepError(msg) from None


def _explain(
    error: ConfigError,
    sweeps: Sequence[Sweep],
    keys: Sequence[tuple[str, ...]],
    combination: tuple[Any, ...],
    source: str,
    name: str,
) -> str:
    """The config's problems, each blamed on the flag whose key it concerns if one does."""
    problems = [line.strip() for line in str(error).splitlines()[1:]] or [str(error)]
    explained = []
    unexplained = False
    for problem in problems:
        where, _, detail = problem.partition(": ")
        blamed = _blamed(where, keys)
        if blamed is None:
            explained.append(problem)
            unexplained = True
            continue
        sweep, key, value = sweeps[blamed], keys[blamed], combination[blamed]
        explained.append(_blame(sweep, key, value, where, detail))
    text = "; ".join(explained)
    # A problem no flag touches lies in the file (or in how values combine).
    return f"{source}: with {name}: {text}" if unexplained else text


def _blamed(where: str, keys: Sequence[tuple[str, ...]]) -> int | None:
    """The flag whose key lies on the same path as a problem's location, if any."""
    where = where.removesuffix(KEY_LOC)
    for n, key in enumerate(keys):
        dotted = ".".join(key)
        if where == dotted or dotted.startswith(where + ".") or where.startswith(dotted + "."):
            return n
    return None


def _blame(sweep: Sweep, key: tuple[str, ...], value: Any, where: str, detail: str) -> str:
    bad_key = where.endswith(KEY_LOC)
    depth = _depth(where.removesuffix(KEY_LOC), key)
    if depth is not None and (detail == EXTRA or bad_key):
        parent = ".".join(key[: depth - 1]) or "(top level)"
        name = key[depth - 1]
        what = f"extra key {name!r}" if detail == EXTRA else f"{name!r} is not a key here: {detail}"
        return f"--set {sweep.key}: no such setting in the config ({parent}: {what})"
    return f"--set {sweep.key}={_show(value)}: {where}: {detail}"


def _depth(where: str, key: tuple[str, ...]) -> int | None:
    """How many of ``key``'s parts make the location ``where``, if it is a prefix of ``key``."""
    for depth in range(1, len(key) + 1):
        if ".".join(key[:depth]) == where:
            return depth
    return None
