"""One false-alarm budget per model, shared out over its windowed tests.

A model's monitors run many tests on every window: each column's drift
statistics against the baseline, its quality checks, the anomaly rate; and
each version and segment has monitors of its own. With fixed thresholds the
false pages grow with the number of columns and segments, and with the
window rate. Instead, ``false_alarms_per_day`` (per model) is spread evenly
over the tests (Bonferroni): a window spanning ``s`` seconds of event time,
in a model that runs ``m`` tests per window in the worst case, judges each
test at the level

    level = false_alarms_per_day * (s / 86,400) / m

so the expected number of false alarms over a day of windows, summed over
every test, is at most the budget, whatever the traffic: fast traffic closes
more, shorter windows, each judged more strictly. (Bonferroni ignores that
the tests are correlated, so it is conservative; a sharper correction would
need their joint law.) The level is capped at ``max_level`` for long, quiet
windows, and rounded down to an eighth of a decade, so levels are few and
readable.

A level turns into a significance gate in front of the drift statistics.
The configured thresholds stay what they are, effect sizes worth a page;
but a window's statistics count only when the window differs from its
reference beyond what sampling noise reaches with probability ``level``.
Without the gate, noise alone crosses them in small windows: a 200-event
window's PSI against a 20-bin baseline averages about 0.1 under no drift,
the default threshold. One gate per column and reference, whatever the
number of statistics, each with an exponential tail bound rather than a
chi-square approximation (the chi-square laws of PSI and JS were measured
to understate their tails badly at the levels a budget asks for):

* numeric columns: the binned KS statistic, at most the raw samples' one,
  whose tail is ``P(D >= t) <= 2 exp(-2 t^2 / (1/n + 1/N))`` for ``n``
  window values against ``N`` reference values (Dvoretzky-Kiefer-Wolfowitz
  with Massart's constant: exact for one sample against a known law; for
  two samples the same form is the asymptotic law, and measured here it
  holds at small windows too);
* categorical columns: the largest difference of one category's share
  (L-infinity), by Hoeffding's inequality for each share,
  ``P(|p - q| >= t) <= 2 exp(-2 t^2 / (1/n + 1/N))``, and a union over the
  ``k`` categories.

>>> budget = Budget(false_alarms_per_day=0.1)
>>> level = budget.level(tests=80, span_seconds=60.0)
>>> f"{level:.1e}"
'7.5e-07'
>>> round(critical_value("ks", level, n=200, reference=20_000, bins=20), 3)
0.193
>>> round(critical_value("ks", level, n=5000, reference=20_000, bins=20), 3)
0.043
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86_400.0
STEPS_PER_DECADE = 8


@dataclass(frozen=True)
class Budget:
    """A model's false alarms per day, spread over its windowed tests.

    ``false_alarms_per_day`` defaults to 0.1: one false page in ten days
    per model, a rate an on-call rotation tolerates. ``max_level`` caps one
    test's level in one window (a quiet model's window can span hours).
    """

    false_alarms_per_day: float = 0.1
    max_level: float = 1e-3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.false_alarms_per_day) and self.false_alarms_per_day > 0):
            msg = (
                "alerts.false_alarms_per_day must be a finite number > 0, "
                f"got {self.false_alarms_per_day!r}"
            )
            raise ValueError(msg)
        if not 0.0 < self.max_level < 1.0:
            msg = f"alerts.max_level must be in (0, 1), got {self.max_level!r}"
            raise ValueError(msg)

    def level(self, tests: int, span_seconds: float) -> float:
        """One test's false-alarm probability in a window of ``span_seconds``.

        A window shorter than a second counts as a second, so a burst of
        events with one timestamp is not judged infinitely strictly.
        """
        if tests < 1:
            msg = f"tests must be at least 1, got {tests}"
            raise ValueError(msg)
        span = max(span_seconds, 1.0) if math.isfinite(span_seconds) else 1.0
        raw = self.false_alarms_per_day * span / DAY / tests
        return rounded_down(min(raw, self.max_level))


def rounded_down(level: float) -> float:
    """``level`` rounded down to an eighth of a decade.

    >>> rounded_down(0.001), rounded_down(0.0009)
    (0.001, 0.0007498942093324559)
    """
    steps = math.floor(math.log10(level) * STEPS_PER_DECADE + 1e-9)
    return 10.0 ** (steps / STEPS_PER_DECADE)


def critical_value(statistic: str, level: float, *, n: int, reference: int, bins: int) -> float:
    """The least value of ``statistic`` that no-drift noise reaches with probability ``level``.

    ``statistic`` is ``ks`` (numeric columns) or ``linf`` (categorical
    ones); ``n`` and ``reference`` are the two samples' sizes, ``bins`` the
    categories compared. ``inf`` when either sample is empty.
    """
    if n <= 0 or reference <= 0:
        return math.inf
    noise = 1.0 / n + 1.0 / reference
    if statistic == "ks":
        return _hoeffding(level / 2.0, noise)
    if statistic == "linf":
        return _hoeffding(level / (2.0 * max(bins, 1)), noise)
    msg = f"no critical value for statistic {statistic!r}"
    raise ValueError(msg)


def _hoeffding(level: float, noise: float) -> float:
    """The ``t`` with ``exp(-2 t^2 / noise) = level``."""
    return math.sqrt(noise * math.log(1.0 / level) / 2.0)
