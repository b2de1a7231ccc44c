"""What a PromQL expression reads: the metric names, and the labels it matches or groups by.

Enough of PromQL for the project's own dashboard, rules and ScaledObject:
metric names start with ``driftstream_`` (or are Prometheus's ``up``),
matchers follow a name in braces, and grouping is ``by (...)`` or
``without (...)``.
"""

import re

METRIC = re.compile(r"\b(driftstream_[a-z0-9_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r"\b(driftstream_[a-z0-9_]+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels Prometheus adds to every scraped sample.
TARGET_LABELS = frozenset({"instance", "job"})


def metric_names(expr):
    """Every metric the expression reads (``up`` included)."""
    return set(METRIC.findall(expr))


def matched_labels(expr):
    """(metric, label) for each label matcher of a selector."""
    return {
        (name, label) for name, body in SELECTOR.findall(expr) for label in MATCHER.findall(body)
    }


def grouping_labels(expr):
    """Labels of every ``by (...)`` / ``without (...)`` clause."""
    return {
        label.strip()
        for body in GROUPING.findall(expr)
        for label in body.split(",")
        if label.strip()
    }


def problems(expr, exported):
    """What in ``expr`` the worker does not export: unknown metrics or labels (empty: none).

    ``exported`` maps each sample name to its label names. ``up`` is
    Prometheus's own, with the target labels.
    """
    known = {**exported, "up": set()}
    found = []
    names = metric_names(expr)
    for name in sorted(names - set(known)):
        found.append(f"metric {name} is not exported")
    for name, label in sorted(matched_labels(expr)):
        if name in known and label not in known[name] | TARGET_LABELS:
            found.append(f"{name} has no label {label!r}")
    labels_read = set().union(*(known.get(name, set()) for name in names)) | TARGET_LABELS
    for label in sorted(grouping_labels(expr) - labels_read):
        found.append(f"no metric of the expression has the label {label!r}")
    return found
