"""The backtest's self-contained HTML report.

>>> from driftstream.report import render_report
>>> render_report({"title": "empty", "models": {}}).count("<svg")
0
"""

from driftstream.report.html import render_report

__all__ = ["render_report"]
