"""Pictures of a search: how the architecture weights moved, and the cells it found.

- :func:`plot_alpha_evolution`: for one cell type, one small panel per edge (rows: the
  node the edge enters; columns: the node it leaves) with the softmax weight of every
  candidate operation over the epochs; for PC-DARTS, also the edge's weight (beta).
- :func:`plot_cell`: a genotype's cell as a graph: the inputs ``c_{k-2}`` and ``c_{k-1}``,
  the intermediate nodes 0, 1, ..., and the output ``c_{k}``, each edge labelled with its
  operation.
- :func:`plot_search`: both, for both cells, from a search's log.

matplotlib only (its object API, no global state: safe in threads and without a
display); files are written atomically, the format taken from the suffix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .._atomic import atomic_write
from .genotypes import PRIMITIVES, Genotype, get_genotype

__all__ = ["plot_alpha_evolution", "plot_cell", "plot_search"]

CELLS = ("normal", "reduce")


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install proxyfast[plot]") from None
    return Figure(**kwargs)


def _save(figure, path: str | os.PathLike) -> None:
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_write(path) as file:
        figure.savefig(file, format=suffix, dpi=120)


def _steps_of(edges: int) -> int:
    """The intermediate nodes of a cell with ``edges`` edges (node i has i + 2 inputs)."""
    steps, total = 0, 0
    while total < edges:
        total += steps + 2
        steps += 1
    if total != edges:
        raise ValueError(f"{edges} edges do not make a cell (2 + 3 + 4 + ... inputs per node)")
    return steps


def _input_name(j: int) -> str:
    return {0: "$c_{k-2}$", 1: "$c_{k-1}$"}.get(j, str(j - 2))


def plot_alpha_evolution(
    weights: Sequence[Sequence[Sequence[float]]],
    path: str | os.PathLike,
    *,
    edge_weights: Sequence[Sequence[float]] | None = None,
    primitives: Sequence[str] = PRIMITIVES,
    title: str | None = None,
) -> None:
    """Plots the softmax weight of each operation on each edge over the epochs.

    Args:
        weights: one ``[edges][ops]`` matrix per point in time (epoch 0, the initial
            weights, then one per epoch), each row summing to 1.
        path: the image file (written atomically).
        edge_weights: PC-DARTS's per-edge weights, one ``[edges]`` list per point in time,
            drawn as a dashed black line.
        primitives: the operations, in the order of the columns.
        title: the figure's title.
    """
    if not weights:
        raise ValueError("weights is empty: give at least one [edges][ops] matrix")
    edges = len(weights[0])
    if any(len(matrix) != edges or any(len(row) != len(primitives) for row in matrix) for matrix in weights):
        raise ValueError(f"every weights matrix must be [{edges}][{len(primitives)}] (edges x operations)")
    if edge_weights is not None and (len(edge_weights) != len(weights)
                                     or any(len(row) != edges for row in edge_weights)):
        raise ValueError(f"edge_weights must hold one [{edges}] list per weights matrix")
    steps = _steps_of(edges)
    epochs = list(range(len(weights)))
    # Fixed margins: a constrained layout of this many panels takes seconds to solve.
    figure = _figure(figsize=(2.3 * (steps + 1), 1.9 * steps + 0.9))
    grid = figure.subplots(steps, steps + 1, sharex=True, sharey=True, squeeze=False,
                           gridspec_kw={"left": 0.06, "right": 0.98, "bottom": 0.08, "top": 0.9,
                                        "wspace": 0.12, "hspace": 0.35})
    colours = [f"C{i}" for i in range(len(primitives))]
    edge = 0
    for node in range(steps):
        for j in range(steps + 1):
            axes = grid[node][j]
            if j >= node + 2:
                axes.set_axis_off()
                continue
            for op, name in enumerate(primitives):
                axes.plot(epochs, [matrix[edge][op] for matrix in weights], color=colours[op], lw=1.2,
                          label=name)
            if edge_weights is not None:
                axes.plot(epochs, [row[edge] for row in edge_weights], color="black", ls="--", lw=1.0,
                          label="edge weight (beta)")
            axes.set_title(f"{_input_name(j)} -> {node}", fontsize=8)
            axes.tick_params(labelsize=7)
            axes.grid(alpha=0.3)
            edge += 1
        grid[node][0].set_ylabel("weight", fontsize=8)
    for j in range(steps + 1):
        grid[steps - 1][j].set_xlabel("epoch", fontsize=8)
    handles, labels = grid[0][0].get_legend_handles_labels()
    # The empty upper-right corner of the grid holds the legend.
    grid[0][steps].legend(handles, labels, loc="upper right", fontsize=7, frameon=False)
    if title:
        figure.suptitle(title, fontsize=10)
    _save(figure, path)


def _node_positions(steps: int) -> dict[str, tuple[float, float]]:
    # Inputs on the left, intermediate nodes left to right and alternately up and down
    # (so that edges skipping a node do not run through it), the output on the right.
    positions = {"c_{k-2}": (0.0, 1.0), "c_{k-1}": (0.0, -1.0)}
    for i in range(steps):
        positions[str(i)] = (1.5 + 1.3 * i, 0.55 if i % 2 == 0 else -0.55)
    positions["c_{k}"] = (1.5 + 1.3 * steps + 0.3, 0.0)
    return positions


def _curve(start: tuple[float, float], end: tuple[float, float], bend: float, clearance: float = 0.22,
           points: int = 60) -> list[tuple[float, float]]:
    """A quadratic Bezier from ``start`` to ``end`` whose middle is pushed sideways by
    ``bend`` times the chord's length, without the parts within ``clearance`` of either end
    (where the node boxes are)."""
    (x0, y0), (x1, y1) = start, end
    cx, cy = (x0 + x1) / 2 + bend * (y1 - y0), (y0 + y1) / 2 - bend * (x1 - x0)
    curve = []
    for i in range(points + 1):
        t = i / points
        x = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1
        y = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1
        if min((x - x0) ** 2 + (y - y0) ** 2, (x - x1) ** 2 + (y - y1) ** 2) >= clearance ** 2:
            curve.append((x, y))
    return curve


def plot_cell(genotype: Genotype | str, path: str | os.PathLike, cell: str = "normal",
              title: str | None = None) -> None:
    """Draws the ``cell`` (``"normal"`` or ``"reduce"``) of ``genotype`` as a graph and
    writes it to ``path`` atomically.

    ``genotype`` may also be a genotype string or a named architecture
    (:func:`~proxyfast.nas.get_genotype`).
    """
    genotype = get_genotype(genotype)
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
    edges = genotype.normal if cell == "normal" else genotype.reduce
    concat = genotype.normal_concat if cell == "normal" else genotype.reduce_concat
    steps = genotype.steps
    positions = _node_positions(steps)
    right = positions["c_{k}"][0] + 0.5
    figure = _figure(figsize=(1.6 * (right + 0.5), 4.2), layout="constrained")
    axes = figure.add_subplot()
    axes.set_xlim(-0.5, right)
    axes.set_axis_off()

    colours = {"c_{k-2}": "#a6cee3", "c_{k-1}": "#a6cee3", "c_{k}": "#fdbf6f"}
    for name, (x, y) in positions.items():
        label = f"${name}$" if name.startswith("c_") else name
        axes.text(x, y, label, ha="center", va="center", fontsize=11, zorder=3,
                  bbox={"boxstyle": "round,pad=0.35", "fc": colours.get(name, "#b2df8a"), "ec": "black"})

    heights = [y for _, y in positions.values()]

    def clear_bend(start: str, end: str, side: float) -> float:
        # The least bend, preferring ``side``, whose curve keeps clear of the other nodes.
        others = [xy for name, xy in positions.items() if name not in (start, end)]
        best, best_gap = 0.0, -1.0
        for bend in (0.1, 0.25, 0.4, 0.55):
            for signed in (side * bend, -side * bend):
                curve = _curve(positions[start], positions[end], signed)
                gap = min(((x - ox) ** 2 + (y - oy) ** 2) ** 0.5 for x, y in curve for ox, oy in others)
                if gap >= 0.35:
                    return signed
                if gap > best_gap:
                    best, best_gap = signed, gap
        return best

    def arrow(start: str, end: str, label: str | None, bend: float) -> None:
        curve = _curve(positions[start], positions[end], bend)
        heights.extend(y for _, y in curve)
        axes.plot([x for x, _ in curve], [y for _, y in curve], color="0.35", lw=1.1, zorder=1)
        axes.annotate("", xy=curve[-1], xytext=curve[-2], zorder=2,
                      arrowprops={"arrowstyle": "-|>,head_length=0.5,head_width=0.25", "color": "0.35",
                                  "lw": 1.1, "shrinkA": 0, "shrinkB": 0})
        if label:
            x, y = curve[len(curve) // 2]
            axes.text(x, y, label, ha="center", va="center", fontsize=8, zorder=4,
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})

    names = ["c_{k-2}", "c_{k-1}", *map(str, range(steps))]
    for position, (op, source) in enumerate(edges):
        # A node's two inputs bend to opposite sides where they can, so that they do not overlap.
        start, end = names[source], str(position // 2)
        arrow(start, end, op, clear_bend(start, end, 1.0 if position % 2 == 0 else -1.0))
    for node in concat:
        arrow(str(node - 2), "c_{k}", None, 0.0)
    axes.set_ylim(min(heights) - 0.35, max(heights) + 0.35)
    axes.set_title(title or f"{cell} cell", fontsize=11)
    _save(figure, path)


def plot_search(initial: dict[str, Any], history: Sequence[dict[str, Any]], genotype: Genotype,
                out_dir: str | os.PathLike) -> dict[str, str]:
    """Writes ``alphas_normal.png``, ``alphas_reduce.png``, ``cell_normal.png`` and
    ``cell_reduce.png`` into ``out_dir`` from a search's initial weights, its per-epoch
    records (as in ``search_log.json``) and its genotype; returns the paths by name."""
    files = {}
    for cell in CELLS:
        key = f"alphas_{cell}"
        weights = [initial[key], *(record[key] for record in history)]
        edge_weights = None
        if f"betas_{cell}" in initial:
            edge_weights = [initial[f"betas_{cell}"], *(record[f"betas_{cell}"] for record in history)]
        files[key] = os.path.join(os.fspath(out_dir), f"{key}.png")
        plot_alpha_evolution(weights, files[key], edge_weights=edge_weights,
                             title=f"{cell} cell: softmax of the architecture weights per edge")
        files[f"cell_{cell}"] = os.path.join(os.fspath(out_dir), f"cell_{cell}.png")
        plot_cell(genotype, files[f"cell_{cell}"], cell)
    return files
