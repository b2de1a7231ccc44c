"""Config keys from the environment, and secrets read from files.

Every key of the YAML config can be set by an environment variable, and a
variable wins over the file:

- The variable is ``DRIFTSTREAM__`` followed by the key's path, its parts
  joined by double underscores: ``redis.url`` is ``DRIFTSTREAM__REDIS__URL``,
  ``kafka.topics.alerts`` is ``DRIFTSTREAM__KAFKA__TOPICS__ALERTS``. Names
  are not case-sensitive (config keys are lower case).
- librdkafka properties under ``kafka.client`` write each dot as a single
  underscore: ``DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD`` sets
  ``sasl.password`` and ``DRIFTSTREAM__KAFKA__CLIENT__SECURITY_PROTOCOL``
  sets ``security.protocol``. librdkafka's two plain-value properties with an
  underscore in their own name, ``log_level`` and ``enabled_events``, keep it.
- Names chosen in the file (model ids, feature, metric and version names)
  match ignoring case, with ``_`` standing for ``-`` or ``.``:
  ``DRIFTSTREAM__MODELS__FRAUD_DETECTOR__WINDOW__SIZE`` sets
  ``models.fraud-detector.window.size``. A name the file does not have is
  taken in lower case; give a JSON mapping one level up to keep its case.
- A value is text that the key's type reads: ``500``, ``0.2``, ``true``, and
  ``null`` for none. Lists and mappings are JSON:
  ``DRIFTSTREAM__MODELS__FRAUD_DETECTOR__SEGMENTS__KEYS='["country"]'``.
  A JSON mapping is merged into the file's key by key; a list replaces
  the file's list.

Secrets can come from files. A key that holds a secret (``redis.url``,
``redis.password`` and every ``kafka.client`` property) can be given instead
as ``<key>_file``, the path of a file whose text, trailing newlines
stripped, is the value: ``redis: {password_file: /run/secrets/redis}`` in
the file, ``DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD_FILE=/run/secrets/sasl``
in the environment. A relative path is taken from the config file's folder,
as baseline paths are. A value read from a file is kept as a ``SecretStr``,
so it never shows in a repr, a log line or an error message; so are the
values of secret keys set directly (``config.KafkaConfig`` says which).

pydantic-settings reads the variables (prefix, nesting, case, JSON values)
against the config's own pydantic models; this module renames the keys to
the file's spelling, remembers which variable set which key so that a bad
value is reported under the variable's name, and reads the secret files.
"""

from __future__ import annotations

import errno
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_settings import EnvSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "DRIFTSTREAM__"
DELIMITER = "__"
FILE_SUFFIX = "_file"
CLIENT = ("kafka", "client")
# librdkafka's CONFIGURATION.md names these two settable properties with an
# underscore; in every other property an underscore of a variable is a dot.
UNDERSCORE_PROPERTIES = frozenset({"log_level", "enabled_events"})
# Passwords, tokens and PEM keys are a few KB; a bigger file is a wrong path.
MAX_SECRET_BYTES = 1 << 20

KeyPath = tuple[str, ...]


class OverrideError(ValueError):
    """A variable or a secret file that cannot be used; the message names which."""


@dataclass(frozen=True)
class Overrides:
    """What the environment sets, keyed as the file spells its keys."""

    data: dict[str, Any] = field(default_factory=dict)
    # config key path -> the variable that set it (or the section holding it)
    variables: dict[KeyPath, str] = field(default_factory=dict)

    def variable(self, loc: Sequence[object]) -> str | None:
        """The variable that set the key at ``loc``, or a section holding it."""
        parts = tuple(str(part) for part in loc)
        for depth in range(len(parts), 0, -1):
            name = self.variables.get(parts[:depth])
            if name is not None:
                return name
        return None

    def where(self, loc: Sequence[object]) -> str:
        """The dotted key, with the variable that set it: for error messages."""
        dotted = ".".join(str(part) for part in loc) or "(top level)"
        name = self.variable(loc)
        return dotted if name is None else f"{dotted} (set by {name})"


def read_environment(
    environ: Mapping[str, str], schema: type[BaseModel], file_data: Any
) -> Overrides:
    """The ``DRIFTSTREAM__`` variables of ``environ`` as config data for ``schema``.

    ``file_data`` is the parsed file, whose names (model ids and others)
    the variables' names are matched to.
    """
    ours = {name: value for name, value in environ.items() if name.upper().startswith(PREFIX)}
    if not ours:
        return Overrides()
    paths = {name: _variable_path(name, schema) for name, value in ours.items()}
    level = file_data if isinstance(file_data, Mapping) else {}
    data = _renamed(_parse(ours, schema), (), level)
    variables = {_config_path(path, level): name for name, path in paths.items()}
    return Overrides(data, variables)


def merge(file_data: Any, overrides: Overrides) -> Any:
    """The file's data with the environment's on top (mappings merged, the rest replaced).

    A key the environment sets in either spelling, ``key`` or ``key_file``,
    replaces the file's in either spelling.
    """
    if not overrides.data:
        return file_data
    if file_data is not None and not isinstance(file_data, Mapping):
        return file_data  # not a mapping of keys: validation says so
    return _merged(file_data, overrides.data)


def _merged(base: Any, override: Any) -> Any:
    if not (isinstance(base, Mapping) and isinstance(override, Mapping)):
        return override
    merged = dict(base)
    for key, value in override.items():
        twin = _twin(key)
        if twin not in override:
            merged.pop(twin, None)
        merged[key] = _merged(merged[key], value) if key in merged else value
    return merged


def _twin(key: str) -> str:
    return key.removesuffix(FILE_SUFFIX) if key.endswith(FILE_SUFFIX) else key + FILE_SUFFIX


# ----------------------------------------------------------------------------- variables


class _Source(EnvSettingsSource):
    """pydantic-settings' environment source over given variables, not ``os.environ``."""

    def __init__(self, schema: type[BaseModel], variables: Mapping[str, str]) -> None:
        self._given = variables
        super().__init__(
            # The source reads only the model's fields; a plain model serves.
            cast(Any, schema),
            case_sensitive=False,
            env_prefix=PREFIX,
            env_nested_delimiter=DELIMITER,
            env_parse_none_str="null",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _parse(variables: Mapping[str, str], schema: type[BaseModel]) -> dict[str, Any]:
    try:
        return dict(_Source(schema, variables)())
    except SettingsError:
        pass
    # pydantic-settings names only the top-level key: find the variable.
    for name, value in variables.items():
        try:
            _Source(schema, {name: value})()
        except SettingsError:
            # Never the value: it may be a secret.
            msg = (
                f"{name}: not valid JSON; a list or mapping is given as JSON, "
                """e.g. '["country", "device"]' or '{"size": 500}'"""
            )
            raise OverrideError(msg) from None
    msg = f"the {PREFIX}* variables cannot be read together: {', '.join(sorted(variables))}"
    raise OverrideError(msg)


def _variable_path(name: str, schema: type[BaseModel]) -> KeyPath:
    """A variable's key parts in lower case, refusing a name no key can have."""
    parts = tuple(name[len(PREFIX) :].lower().split(DELIMITER))
    if not all(parts):
        msg = f"{name}: an empty key part; join key parts with exactly two underscores"
        raise OverrideError(msg)
    if parts[0] not in schema.model_fields:
        keys = ", ".join(schema.model_fields)
        msg = f"{name}: {parts[0]!r} is not a config key (the top-level keys: {keys})"
        raise OverrideError(msg)
    if parts[:2] == CLIENT and len(parts) > len(CLIENT) + 1:
        spelled = PREFIX + "KAFKA__CLIENT__" + "_".join(parts[2:]).upper()
        msg = f"{name}: a librdkafka property writes its dots as single underscores: {spelled}"
        raise OverrideError(msg)
    return parts


def _config_path(parts: KeyPath, file_data: Mapping[str, Any]) -> KeyPath:
    path: KeyPath = ()
    level: Any = file_data
    for part in parts:
        key = _config_key(path, part, level)
        path = (*path, key)
        level = level.get(key) if isinstance(level, Mapping) else None
    return path


def _renamed(data: Mapping[str, Any], path: KeyPath, level: Any) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for part, value in data.items():
        key = _config_key(path, part, level)
        below = level.get(key) if isinstance(level, Mapping) else None
        renamed[key] = _renamed(value, (*path, key), below) if isinstance(value, dict) else value
    return renamed


def _config_key(path: KeyPath, part: str, level: Any) -> str:
    """The file's spelling of the key a variable's part (or a JSON key) names."""
    if path == CLIENT:
        return _client_key(part)
    if isinstance(level, Mapping) and part not in level:
        matches = [key for key in level if isinstance(key, str) and _loose(key) == _loose(part)]
        if len(matches) == 1:
            return matches[0]
    return part


def _client_key(part: str) -> str:
    if "." in part:  # spelled with dots already (a JSON key)
        return part
    stem = part.removesuffix(FILE_SUFFIX)
    name = stem if stem in UNDERSCORE_PROPERTIES else stem.replace("_", ".")
    return name + FILE_SUFFIX if part.endswith(FILE_SUFFIX) else name


def _loose(name: str) -> str:
    return re.sub(r"[-.]", "_", name.lower())


# ----------------------------------------------------------------------------- secret files


def read_secret_files(
    data: Any, schema: type[BaseModel], overrides: Overrides, directory: Path
) -> Any:
    """``data`` with every secret's ``<key>_file`` replaced by ``<key>``: the file's text.

    Relative paths are taken from ``directory`` (the config file's folder).
    """
    return _files_in_model(data, schema, (), _Reader(overrides.where, directory))


@dataclass(frozen=True)
class _Reader:
    where: Callable[[Sequence[object]], str]
    directory: Path


def _files_in_model(data: Any, model: type[BaseModel], path: KeyPath, reader: _Reader) -> Any:
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    for key, value in data.items():
        if not isinstance(key, str):
            continue
        known = model.model_fields.get(key)
        if known is not None:
            out[key] = _files_in(value, known.annotation, (*path, key), reader)
            continue
        target = model.model_fields.get(key.removesuffix(FILE_SUFFIX))
        if key.endswith(FILE_SUFFIX) and target is not None and _holds_secret(target.annotation):
            _take_file(out, key, value, path, reader)
    return out


def _files_in(value: Any, annotation: Any, path: KeyPath, reader: _Reader) -> Any:
    if get_origin(annotation) is dict and isinstance(value, Mapping):
        inner = get_args(annotation)[-1]
        if _holds_secret(inner):  # kafka.client: every property may be a secret
            out = dict(value)
            for key, item in value.items():
                if isinstance(key, str) and key.endswith(FILE_SUFFIX):
                    _take_file(out, key, item, path, reader)
            return out
        model = _model_in(inner)
        if model is not None:
            return {
                key: _files_in_model(item, model, (*path, str(key)), reader)
                for key, item in value.items()
            }
        return value
    model = _model_in(annotation)
    return value if model is None else _files_in_model(value, model, path, reader)


def _take_file(out: dict[str, Any], key: str, value: Any, path: KeyPath, reader: _Reader) -> None:
    name = key.removesuffix(FILE_SUFFIX)
    where = reader.where((*path, key))
    if name in out:
        msg = f"{where}: {'.'.join((*path, name))} is given too; keep one of them"
        raise OverrideError(msg)
    if not isinstance(value, str) or not value.strip():
        msg = f"{where}: give the path of the file that holds the secret"
        raise OverrideError(msg)
    secret = _read_secret(where, reader.directory / Path(value).expanduser())
    del out[key]
    out[name] = SecretStr(secret)


def _read_secret(where: str, path: Path) -> str:
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as error:
        msg = f"{where}: cannot read {path}: {error.strerror or error}{_fix(error)}"
        raise OverrideError(msg) from None
    if len(content) > MAX_SECRET_BYTES:
        msg = f"{where}: {path} is over {MAX_SECRET_BYTES // 1024} KiB; point at the secret's file"
        raise OverrideError(msg)
    try:
        text = content.decode()
    except UnicodeDecodeError:
        msg = f"{where}: {path} is not UTF-8 text"
        raise OverrideError(msg) from None
    text = text.rstrip("\r\n")
    if not text:
        msg = f"{where}: {path} is empty; write the secret into it"
        raise OverrideError(msg)
    return text


def _fix(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return " (mount the secret there or correct the path)"
    if error.errno == errno.EACCES:
        return " (make it readable by the user driftstream runs as)"
    if error.errno == errno.EISDIR:
        return " (give the file inside the folder)"
    return ""


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class an annotation is, or is one of (``Model | None``)."""
    candidates = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        candidates = list(get_args(annotation))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
