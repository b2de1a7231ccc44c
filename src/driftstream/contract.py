"""The event contract's rules that the SDK and the worker must share.

One place decides what a timestamp is, what the dead-letter reasons are
called and what the input roles are, so a producer using the SDK can never
write an event that the worker then dead-letters for its time. Standard
library only: the SDK imports it on model servers.

**Timestamps.** ``ts`` is either

- epoch seconds, an int or a float (not a bool), finite, from 1970-01-01
  up to the end of 9999; epoch milliseconds fall past that range and are
  refused, not guessed at; or
- an RFC 3339 date-time string: ``YYYY-MM-DDTHH:MM:SS``, optional fraction
  of a second, then ``Z`` or a ``+HH:MM`` / ``-HH:MM`` offset. ``t``/``z``
  may be lower case and the ``T`` may be a space, as RFC 3339 allows. A
  leap second (``:60``) rolls over into the next minute.

Refused: times without seconds (``2026-05-01T12:00Z``), the ISO 8601 basic
format (``20260501T120000Z``), offsets without a colon (``+0200``), times
without an offset, and anything outside the range above.

>>> read_timestamp("2026-05-01T12:00:00+02:00")
1777629600.0
>>> read_timestamp(1777629600)
1777629600.0
>>> for refused in ("2026-05-01T12:00Z", "20260501T120000Z", 1777629600000):
...     try:
...         read_timestamp(refused)
...     except TimestampError:
...         print("refused", refused)
refused 2026-05-01T12:00Z
refused 20260501T120000Z
refused 1777629600000
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

__all__ = [
    "BAD_TIMESTAMP",
    "EMPTY",
    "FEATURES",
    "KEY_MISMATCH",
    "LABELS",
    "LABELS_DISABLED",
    "MALFORMED_JSON",
    "MAX_LABEL_BYTES",
    "MAX_TS",
    "MISSING_FIELD",
    "NON_FINITE",
    "NOT_AN_OBJECT",
    "OVERSIZED",
    "PREDICTIONS",
    "REASONS",
    "ROLES",
    "TOO_LONG",
    "TOO_MANY_FEATURES",
    "UNKNOWN_MODEL",
    "UNKNOWN_TOPIC",
    "WRONG_TYPE",
    "TimestampError",
    "parse_timestamp",
    "read_timestamp",
]

# Input roles: what kind of event a topic carries.
PREDICTIONS = "predictions"
FEATURES = "features"
LABELS = "labels"
ROLES = (PREDICTIONS, FEATURES)

# Dead-letter reasons (schemas/dead_letter.md says when each applies).
OVERSIZED = "oversized"
EMPTY = "empty"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NON_FINITE = "non_finite"
BAD_TIMESTAMP = "bad_timestamp"
UNKNOWN_MODEL = "unknown_model"
KEY_MISMATCH = "key_mismatch"
TOO_MANY_FEATURES = "too_many_features"
TOO_LONG = "too_long"
UNKNOWN_TOPIC = "unknown_topic"
LABELS_DISABLED = "labels_disabled"
REASONS = (
    OVERSIZED,
    EMPTY,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    NON_FINITE,
    BAD_TIMESTAMP,
    UNKNOWN_MODEL,
    KEY_MISMATCH,
    TOO_MANY_FEATURES,
    TOO_LONG,
    UNKNOWN_TOPIC,
    LABELS_DISABLED,
)

# The most UTF-8 bytes in a ``model_version`` or in a value of a segment key
# the model's monitors split by (longer is ``TOO_LONG``). Both become keys of
# monitor state and labels of metric series, so they are kept short.
MAX_LABEL_BYTES = 128

# Year 10000 starts here; RFC 3339 cannot write a later time, so neither may a number.
MAX_TS = 253402300800.0

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):(\d\d))?",
    re.ASCII,
)


class TimestampError(ValueError):
    """A ``ts`` the contract refuses; the message shows the value."""


def parse_timestamp(text: str, naive_utc: bool = False) -> float | None:
    """Epoch seconds of an RFC 3339 time, or ``None`` if it is not one.

    The range is not checked here; ``in_range`` does that for every kind of ts.
    An event's time must carry its offset; ``naive_utc`` takes a time
    without one as UTC (for times a person types, such as incidents).

    >>> parse_timestamp("2026-11-22T05:00:00.5+02:00")
    1795316400.5
    >>> parse_timestamp("2026-11-22T05:00:00") is None  # an offset is required
    True
    >>> parse_timestamp("2026-11-22T03:00:00.5", naive_utc=True)
    1795316400.5
    """
    match = _RFC3339.fullmatch(text)
    if match is None or (match[8] is None and match[9] is None and not naive_utc):
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        start = datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()
    except ValueError:
        return None
    offset = 0
    if match[9] is not None:
        sign = 1 if match[9] == "+" else -1
        offset = sign * (int(match[10]) * 3600 + int(match[11]) * 60)
    # Seconds are added, not passed to datetime, so a leap second (60) rolls over.
    return start + second + float(match[7] or 0.0) - offset


def in_range(seconds: float) -> bool:
    """Whether epoch ``seconds`` lie in 1970-01-01 .. 9999-12-31 (NaN does not)."""
    return 0.0 <= seconds < MAX_TS


def read_timestamp(value: object) -> float:
    """Epoch seconds of a contract ``ts``; ``TimestampError`` (or TypeError) if refused."""
    if isinstance(value, str):
        seconds = parse_timestamp(value)
        if seconds is None or not in_range(seconds):
            msg = (
                f"ts {value!r} is not an RFC 3339 time with an offset "
                "(e.g. 2026-05-01T12:00:00Z) from 1970 on"
            )
            raise TimestampError(msg)
        return seconds
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"ts must be epoch seconds or an RFC 3339 string, got {type(value).__name__}"
        raise TypeError(msg)
    seconds = float(value)
    if not in_range(seconds):
        msg = f"ts {value!r} is {range_problem(value)}"
        raise TimestampError(msg)
    return seconds


def range_problem(value: object) -> str:
    """Why a numeric ts is out of range, with a hint for milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "outside 1970-01-01..9999-12-31"
    if not math.isfinite(value):
        return "not a finite number"
    millis = MAX_TS <= value < MAX_TS * 1000
    hint = " (milliseconds? ts is in seconds)" if millis else ""
    return f"outside 1970-01-01..9999-12-31{hint}"
