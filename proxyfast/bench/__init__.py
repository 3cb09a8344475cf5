"""Timing suites: what a search costs on the device at hand, and what the proxy saves.

    >>> from proxyfast import bench
    >>> report = bench.bench_search("cifar10", "darts", proxy_fraction=0.1)
    >>> print(bench.format_table(report))
    >>> bench.write_report(report, "out/bench")          # bench_search.json, bench_search.png
    >>> check = bench.validate_extrapolation()             # prediction vs a measured search

:mod:`.settings` holds the paper's settings and published costs, :mod:`.extrapolate` the
step arithmetic, :mod:`.search_cost` the timing, :mod:`.report` the table, JSON and chart,
:mod:`.validate` the check of the extrapolation against a complete search.
"""

from .extrapolate import SearchPlan, days, hours, plan_search, proxy_size, search_seconds, split_halves, steps_per_epoch
from .report import format_table, plot_costs, write_report
from .search_cost import bench_search, device_defaults, search_config, time_search
from .settings import PAPER_FIGURES, SETTINGS, PaperFigure, Setting, get_setting, paper_figures
from .timing import CallTiming, describe_device, time_calls
from .validate import format_validation, validate_extrapolation

__all__ = [
    "PAPER_FIGURES",
    "SETTINGS",
    "CallTiming",
    "PaperFigure",
    "SearchPlan",
    "Setting",
    "bench_search",
    "days",
    "describe_device",
    "device_defaults",
    "format_table",
    "format_validation",
    "get_setting",
    "hours",
    "paper_figures",
    "plan_search",
    "plot_costs",
    "proxy_size",
    "search_config",
    "search_seconds",
    "split_halves",
    "steps_per_epoch",
    "time_calls",
    "time_search",
    "validate_extrapolation",
    "write_report",
]
