"""Views of a search-cost report: the text table, the JSON file and the bar chart."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from .._atomic import atomic_write

__all__ = ["JSON_NAME", "PLOT_NAME", "format_table", "plot_costs", "write_report"]

JSON_NAME = "bench_search.json"
PLOT_NAME = "bench_search.png"
_ALGO_NAMES = {"darts": "DARTS", "pcdarts": "PC-DARTS"}


def _duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min``, ``6.78 h`` or ``9.1 d``: the unit that keeps it readable."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 4 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def _device_days(report: dict[str, Any]) -> str:
    return "GPU-days" if report["device"]["type"] == "cuda" else "CPU-days"


def _align(rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned."""
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) if col < left else cell.rjust(w) for col, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _paper_cell(figure: dict[str, Any] | None) -> str:
    if figure is None:
        return "-"
    return f"{figure['gpu_days']:.2g} GPU-days ({figure['gpu_hours']:.3g} h), {figure['device']}"


def format_table(report: dict[str, Any]) -> str:
    """The report as text: the device and the step timings, then one row per search
    (all data, proxy) with its step counts and extrapolated cost beside the paper's
    figure, then the scoring, the selection and the proxy's total."""
    setting, config, timing = report["setting"], report["config"], report["timing"]
    algo = _ALGO_NAMES[config["algo"]]
    order = "first" if config["order"] == 1 else "second"
    unit = _device_days(report)
    shape = "x".join(map(str, setting["image_shape"]))
    lines = [
        f"{algo} ({order} order) search cost, {setting['dataset']} setting ({setting['train_size']:,} images {shape}, "
        f"batch {config['batch_size']}, {config['channels']} channels, {config['layers']} cells, "
        f"{config['epochs']} epochs)",
        f"device: {report['device']['name']} ({report['device']['type']}); torch {report['torch_version']}; "
        f"mixed op: {report['mixed_impl']}",
    ]
    if report["reduced"]:
        lines.append(f"reduced configuration ({', '.join(report['reduced'])} differ from the paper's): "
                     "not comparable with the published figures")
    for name, label in (("step", "search step"), ("weight_step", "weight-only step"), ("eval_batch", "eval batch")):
        if timing.get(name):
            t = timing[name]
            lines.append(f"{label}: {t['median_s'] * 1e3:.2f} ms median (min {t['min_s'] * 1e3:.2f}, "
                         f"max {t['max_s'] * 1e3:.2f}) over {t['calls']} calls after {t['warmup']} warm-up")
    if report.get("peak_memory_gib") is not None:
        lines.append(f"peak device memory of the step: {report['peak_memory_gib']:.2f} GiB")
    lines.append("")

    full, proxy = report["searches"]["full"], report["searches"]["proxy"]
    paper = report["paper"]
    proxy_label = f"search, {100 * setting['proxy_fraction']:g}% proxy"
    rows = [("", "images", "halves (w / a)", "steps/epoch", "steps", "time here", unit, "paper")]
    for label, plan, figure in (("search, full data", full, paper["full"]), (proxy_label, proxy, paper["proxy"])):
        rows.append((label, f"{plan['examples']:,}", f"{plan['train_examples']:,} / {plan['val_examples']:,}",
                     f"{plan['steps_per_epoch']:,}", f"{plan['total_steps']:,}", _duration(plan["seconds"]),
                     f"{plan['days']:.3g}", _paper_cell(figure)))
    scoring, selection, total = report["scoring"], report["selection"], report["proxy_total"]
    rows.append((f"scoring, {scoring['model']}", f"{scoring['examples']:,}", "", "", "", _duration(scoring["seconds"]),
                 f"{scoring['seconds'] / 86400:.3g}", f"({scoring['images_per_second']:,.0f} img/s)"))
    rows.append(("selection, P1", f"{selection['k']:,} of {selection['n']:,}", "", "", "",
                 _duration(selection["seconds"]), f"{selection['seconds'] / 86400:.2g}", ""))
    rows.append(("proxy total", "", "", "", "", _duration(total["seconds"]), f"{total['days']:.3g}",
                 "(scoring + selection + proxy search)"))
    table = _align(rows)
    lines += [table[0], "-" * len(table[0]), *table[1:]]

    speedup = report["speedup"]
    parts = []
    if speedup["search"] is not None:
        parts.append(f"full / proxy search {speedup['search']:.1f}x")
    if speedup["total"] is not None:
        parts.append(f"with scoring and selection {speedup['total']:.1f}x")
    if paper["speedup"] is not None:
        parts.append(f"paper {paper['speedup']:.1f}x")
    if parts:
        lines.append("speed-up: " + ", ".join(parts))
    notes = [figure["note"] + f" ({figure['source']})" for figure in (paper["full"], paper["proxy"]) if figure]
    lines += [f"paper: {note}" for note in notes]
    return "\n".join(lines)


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install proxyfast[plot]") from None
    return Figure


def plot_costs(report: dict[str, Any], path: str | os.PathLike) -> None:
    """A bar chart of the search's cost in hours (log scale): all data, the proxy and
    the proxy's total, measured here beside the paper's figures; written atomically."""
    Figure = _figure_class()
    groups = ["full data", "proxy", "proxy total\n(+ scoring, selection)"]
    here = [report["searches"]["full"]["hours"], report["searches"]["proxy"]["hours"], report["proxy_total"]["hours"]]
    published = [report["paper"]["full"], report["paper"]["proxy"], None]
    paper_hours = [entry["gpu_hours"] if entry else math.nan for entry in published]

    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    width = 0.38
    positions = range(len(groups))
    device = report["device"]["name"]
    bars_here = axes.bar([p - width / 2 for p in positions], here, width, label=f"here: {device}", color="tab:blue")
    devices = sorted({entry["device"] for entry in published if entry})
    bars_paper = axes.bar([p + width / 2 for p in positions], paper_hours, width, color="tab:gray",
                          label=f"paper: {', '.join(devices)}" if devices else "paper: not published")
    for bars in (bars_here, bars_paper):
        for bar in bars:
            value = bar.get_height()
            if math.isfinite(value) and value > 0:
                axes.annotate(_duration(value * 3600), (bar.get_x() + bar.get_width() / 2, value),
                              ha="center", va="bottom", fontsize=8)
    axes.set_xticks(list(positions), groups)
    axes.set_yscale("log")
    axes.set_ylabel("search cost (device-hours, log scale)")
    config, setting = report["config"], report["setting"]
    title = (f"{_ALGO_NAMES[config['algo']]} (order {config['order']}) on {setting['dataset']}, "
             f"{100 * setting['proxy_fraction']:g}% proxy")
    if report["reduced"]:
        title += " (reduced configuration)"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_write(path) as file:
        figure.savefig(file, format=fmt, dpi=120)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, plot: bool = True) -> dict[str, str]:
    """Writes ``bench_search.json`` and (with matplotlib) ``bench_search.png`` to
    ``out_dir``, atomically; returns their paths by kind."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    files = {"json": os.path.join(out_dir, JSON_NAME)}
    with atomic_write(files["json"]) as file:
        file.write(json.dumps(report, indent=2, allow_nan=False).encode("utf-8") + b"\n")
    if plot:
        files["plot"] = os.path.join(out_dir, PLOT_NAME)
        plot_costs(report, files["plot"])
    return files
