"""Human-readable views of a proxy set: the per-bin table and the histogram plot."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from .._atomic import atomic_write
from .binning import histogram
from .proxyset import ProxySet
from ..scoring import Scores

__all__ = ["bin_table", "plot_histogram"]


def bin_table(proxyset: ProxySet) -> str:
    """An aligned text table: per log10-entropy bin, the examples, the selected ones and
    the percent of the bin selected, then a totals line."""
    rows = proxyset.table()
    last = len(rows) - 1
    body = [
        # The top edge belongs to the last bin, so its range is closed.
        (f"[{row.lo:g}, {row.hi:g}{']' if b == last else ')'}", str(row.examples), str(row.selected),
         f"{row.percent:.2f}%" if row.examples else "-")
        for b, row in enumerate(rows)
    ]
    total_percent = 100.0 * proxyset.k / proxyset.n
    lines = [("log10 entropy", "examples", "selected", "percent"), *body,
             ("total", str(proxyset.n), str(proxyset.k), f"{total_percent:.2f}%")]
    widths = [max(len(line[col]) for line in lines) for col in range(4)]

    def format_line(cells: Sequence[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])])

    rule = "-" * len(format_line(lines[0]))
    return "\n".join([format_line(lines[0]), rule, *map(format_line, lines[1:-1]), rule, format_line(lines[-1])])


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install proxyfast[plot]") from None
    return Figure


def plot_histogram(
    proxysets: ProxySet | Sequence[ProxySet],
    scores: Scores | None,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
) -> None:
    """Plots the log10-entropy histogram of all data against one or more proxies (the
    style of the paper's Figure 2) and writes it to ``path`` atomically; the format
    follows the file suffix (png by default).

    With ``scores`` every series is binned from them with the first proxy's bin width;
    without, the histograms stored in the proxy sets are used (they must share edges).
    """
    if isinstance(proxysets, ProxySet):
        proxysets = [proxysets]
    if not proxysets:
        raise ValueError("proxysets is empty: give at least one ProxySet")
    labels = list(labels) if labels is not None else [f"proxy ({p.method}, k={p.k:,})" for p in proxysets]
    if len(labels) != len(proxysets):
        raise ValueError(f"labels has {len(labels)} entries for {len(proxysets)} proxy sets")
    Figure = _figure_class()

    if scores is not None:
        for proxy in proxysets:
            if proxy.n != len(scores):
                raise ValueError(f"scores has {len(scores)} examples but a proxy set was selected from {proxy.n}")
        hist, bin_ids = histogram(scores.log10_entropy, proxysets[0].histogram.bin_width)
        bin_ids = bin_ids.to(torch.int64)
        selected = [
            torch.bincount(bin_ids[p.indices.to(bin_ids.device)], minlength=hist.n_bins).cpu().numpy()
            for p in proxysets
        ]
    else:
        hist = proxysets[0].histogram
        if any(not np.array_equal(p.histogram.edges, hist.edges) for p in proxysets):
            raise ValueError("the proxy sets have different histogram edges; pass the scores to plot them together")
        selected = [p.selected_per_bin for p in proxysets]

    edges, width = hist.edges, hist.bin_width
    series = [("all data", hist.counts), *zip(labels, selected)]
    bar_width = width / (len(series) + 1)
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for i, (label, counts) in enumerate(series):
        axes.bar(edges[:-1] + (i + 0.5) * bar_width, counts, width=bar_width, align="edge", label=label)
    axes.set_yscale("log")
    axes.set_xlabel("log10 entropy (nats)")
    axes.set_ylabel("examples")
    axes.set_xticks(edges[:: max(1, len(edges) // 12)])
    axes.legend()
    axes.set_title(f"log10-entropy histogram, bin width {width:g}")

    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_write(path) as file:
        figure.savefig(file, format=suffix, dpi=150)


def plot_methods(
    proxysets: dict[str, ProxySet],
    scores: Scores,
    path: str | os.PathLike,
    title: str | None = None,
    columns: int = 3,
) -> None:
    """Small multiples in the style of the paper's Figure 2: for each method, the
    log10-entropy histogram of all data (grey) against that method's proxy, on shared
    bins and axes; written to ``path`` atomically (format from the suffix)."""
    if not proxysets:
        raise ValueError("proxysets is empty: give at least one method's ProxySet")
    for name, proxy in proxysets.items():
        if proxy.n != len(scores):
            raise ValueError(f"scores has {len(scores)} examples but proxy {name!r} was selected from {proxy.n}")
    Figure = _figure_class()
    first = next(iter(proxysets.values()))
    hist, bin_ids = histogram(scores.log10_entropy, first.histogram.bin_width)
    bin_ids = bin_ids.to(torch.int64)
    edges = hist.edges
    rows = -(-len(proxysets) // columns)
    figure = Figure(figsize=(3.6 * columns, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, proxy) in zip(axes, proxysets.items()):
        selected = torch.bincount(bin_ids[proxy.indices.to(bin_ids.device)], minlength=hist.n_bins).cpu().numpy()
        ax.stairs(hist.counts, edges, fill=True, color="0.8", label="all data")
        ax.stairs(selected, edges, fill=True, alpha=0.8, color="C0", label="proxy")
        ax.set_yscale("log")
        ax.set_title(f"{name} (k={proxy.k:,})", fontsize=10)
    for ax in axes[len(proxysets):]:
        ax.set_visible(False)
    for ax in axes[(rows - 1) * columns:]:
        ax.set_xlabel("log10 entropy (nats)")
    for ax in axes[::columns]:
        ax.set_ylabel("examples")
    axes[0].legend(fontsize=8)
    figure.suptitle(title or f"log10-entropy histogram of all data vs. each proxy (bin width {hist.bin_width:g})")
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_write(path) as file:
        figure.savefig(file, format=suffix, dpi=150)
