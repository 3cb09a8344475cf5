"""The DARTS search space and its genotypes (Liu et al., ICLR 2019).

A cell has two inputs (the outputs of the two previous cells, nodes 0 and 1) and
``steps`` intermediate nodes (4 in DARTS). Intermediate node ``i`` (numbered from 2)
sums two operations, each applied to an earlier node; the cell's output concatenates
the intermediate nodes. A genotype lists, for the normal and the reduction cell, the
``(operation, input node)`` pairs node by node, two per node, and the nodes concatenated.

Its string form is the one DARTS prints, so published genotypes can be pasted in::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Sequence

__all__ = [
    "ALIASES",
    "DARTS_V1",
    "DARTS_V2",
    "GENOTYPES",
    "PC_DARTS",
    "PC_DARTS_IMAGENET",
    "PRIMITIVES",
    "PROXY_DARTS_CIFAR10",
    "PROXY_DARTS_IMAGENET",
    "PROXY_ECODARTS_CIFAR10",
    "PROXY_PC_DARTS_CIFAR10",
    "PROXY_PC_DARTS_IMAGENET",
    "PROXY_SDARTS_CIFAR10",
    "PROXY_SGAS_CIFAR10",
    "Genotype",
    "get_genotype",
]

# The order matters: it is the order of the rows of the architecture parameters.
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

Edge = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A discrete cell architecture: two ``(op, input)`` edges per intermediate node.

    Raises ``ValueError`` on an unknown operation, ``none``, an input that is not an
    earlier node, an odd or mismatched number of edges, or a concatenated node that does
    not exist.
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for field in ("normal", "reduce"):
            object.__setattr__(self, field, _edges(field, getattr(self, field)))
        if not self.normal or len(self.normal) % 2 or len(self.reduce) != len(self.normal):
            raise ValueError(
                "a genotype needs two edges per intermediate node, the same number in both cells; "
                f"got {len(self.normal)} normal and {len(self.reduce)} reduction edges"
            )
        for field in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, field, _concat(field, getattr(self, field), self.steps))

    @property
    def steps(self) -> int:
        """The number of intermediate nodes in each cell."""
        return len(self.normal) // 2

    def __str__(self) -> str:
        def edges(cell: Sequence[Edge]) -> str:
            return "[" + ", ".join(f"({op!r}, {node})" for op, node in cell) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Parses the string form (``range(2, 6)`` is accepted for a concat, as DARTS
        writes it). Only literals are read; nothing in ``text`` is executed."""
        try:
            call = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as error:
            raise ValueError(f"not a genotype string: {text!r} ({error.msg})") from None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
            raise ValueError(f"a genotype string has the form Genotype(normal=..., ...); got {text!r}")
        fields = [field.name for field in dataclasses.fields(cls)]
        if call.args or {kw.arg for kw in call.keywords} != set(fields) or len(call.keywords) != len(fields):
            raise ValueError(f"a genotype string names exactly the keywords {', '.join(fields)}; got {text!r}")
        values = {kw.arg: _literal(kw.arg, kw.value) for kw in call.keywords}
        return cls(**values)


def _literal(field: str, node: ast.expr):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords):
        return range(*(_literal(field, arg) for arg in node.args))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"genotype field {field!r} is not a literal: {ast.unparse(node)}") from None


def _edges(field: str, cell) -> tuple[Edge, ...]:
    if isinstance(cell, (str, bytes)) or not isinstance(cell, Iterable):
        raise ValueError(f"{field} must be a list of (op, input) pairs, got {cell!r}")
    edges = []
    for position, edge in enumerate(cell):
        if not (isinstance(edge, Sequence) and len(edge) == 2):
            raise ValueError(f"{field} edge {position} must be an (op, input) pair, got {edge!r}")
        op, node = edge
        if op not in PRIMITIVES or op == "none":
            raise ValueError(f"{field} edge {position}: unknown operation {op!r}; one of {', '.join(PRIMITIVES[1:])}")
        # Edges come two per node; intermediate node k (numbered from 2) may read nodes 0 .. k-1.
        limit = position // 2 + 2
        if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < limit:
            raise ValueError(f"{field} edge {position} ({op}): input node must be an integer in [0, {limit}), got {node!r}")
        edges.append((op, node))
    return tuple(edges)


def _concat(field: str, concat, steps: int) -> tuple[int, ...]:
    if isinstance(concat, (str, bytes)) or not isinstance(concat, Iterable):
        raise ValueError(f"{field} must be a list of node indices, got {concat!r}")
    nodes = tuple(concat)
    valid = range(2, steps + 2)
    if not nodes or len(set(nodes)) != len(nodes) or any(
        isinstance(n, bool) or not isinstance(n, int) or n not in valid for n in nodes
    ):
        raise ValueError(f"{field} must list distinct intermediate nodes in [2, {steps + 2}), got {concat!r}")
    return nodes


def _cell(*nodes: tuple[Edge, Edge]) -> tuple[Edge, ...]:
    return tuple(edge for node in nodes for edge in node)


_ALL_NODES = (2, 3, 4, 5)

# The cells that DARTS (first and second order) and PC-DARTS published for their
# CIFAR-10 searches, node by node.
DARTS_V1 = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 1), ("sep_conv_3x3", 0)),
        (("skip_connect", 0), ("sep_conv_3x3", 1)),
        (("skip_connect", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("skip_connect", 2)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 2), ("max_pool_3x3", 0)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("skip_connect", 2), ("avg_pool_3x3", 0)),
    ),
    reduce_concat=_ALL_NODES,
)
"""DARTS (first order), CIFAR-10: 3.00% test error in the DARTS paper."""

DARTS_V2 = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 1), ("skip_connect", 0)),
        (("skip_connect", 0), ("dil_conv_3x3", 2)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
    ),
    reduce_concat=_ALL_NODES,
)
"""DARTS (second order), CIFAR-10: 2.76% test error in the DARTS paper."""

PC_DARTS = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 1), ("skip_connect", 0)),
        (("sep_conv_3x3", 0), ("dil_conv_3x3", 1)),
        (("sep_conv_5x5", 0), ("sep_conv_3x3", 1)),
        (("avg_pool_3x3", 0), ("dil_conv_3x3", 1)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("sep_conv_5x5", 1), ("max_pool_3x3", 0)),
        (("sep_conv_5x5", 1), ("sep_conv_5x5", 2)),
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 3)),
        (("sep_conv_3x3", 1), ("sep_conv_3x3", 2)),
    ),
    reduce_concat=_ALL_NODES,
)
"""PC-DARTS, CIFAR-10: 2.57% test error in the PC-DARTS paper."""

# The cell PC-DARTS published for its search on ImageNet, as its authors' code
# (github.com/yuhuixu1993/PC-DARTS, genotypes.py) lists it.
PC_DARTS_IMAGENET = Genotype(
    normal=_cell(
        (("skip_connect", 1), ("sep_conv_3x3", 0)),
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("sep_conv_3x3", 1), ("sep_conv_3x3", 3)),
        (("sep_conv_3x3", 1), ("dil_conv_5x5", 4)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("dil_conv_5x5", 2), ("max_pool_3x3", 1)),
        (("sep_conv_3x3", 2), ("sep_conv_3x3", 1)),
        (("sep_conv_5x5", 0), ("sep_conv_3x3", 3)),
    ),
    reduce_concat=_ALL_NODES,
)
"""PC-DARTS, searched directly on ImageNet (``PC_DARTS_image`` in the PC-DARTS code)."""

# The cells searched on proxy data in Na et al., "Accelerating Neural Architecture Search
# via Proxy Data" (IJCAI 2021), as the authors' code (github.com/nabk89/NAS-with-Proxy-data,
# genotypes.py) lists them; the name it gives each is in the docstring. Every proxy is the
# paper's P1 selection (histogram type 1) of 10% of the training set.
PROXY_DARTS_IMAGENET = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("sep_conv_5x5", 2), ("skip_connect", 1)),
        (("sep_conv_3x3", 0), ("sep_conv_5x5", 1)),
        (("sep_conv_5x5", 4), ("sep_conv_3x3", 0)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("skip_connect", 0), ("sep_conv_5x5", 1)),
        (("dil_conv_5x5", 2), ("skip_connect", 0)),
        (("max_pool_3x3", 0), ("dil_conv_5x5", 2)),
        (("max_pool_3x3", 0), ("sep_conv_3x3", 3)),
    ),
    reduce_concat=_ALL_NODES,
)
"""DARTS searched directly on a 10% P1 proxy of ImageNet (``imagenet_DARTS_proxy_histo1_10p``)."""

PROXY_PC_DARTS_IMAGENET = Genotype(
    normal=_cell(
        (("dil_conv_5x5", 0), ("sep_conv_5x5", 1)),
        (("sep_conv_5x5", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 1), ("dil_conv_5x5", 2)),
        (("sep_conv_5x5", 0), ("dil_conv_5x5", 3)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("skip_connect", 1), ("skip_connect", 0)),
        (("skip_connect", 2), ("max_pool_3x3", 0)),
        (("dil_conv_5x5", 3), ("dil_conv_5x5", 2)),
        (("sep_conv_3x3", 1), ("dil_conv_5x5", 4)),
    ),
    reduce_concat=_ALL_NODES,
)
"""PC-DARTS on a 10% P1 proxy of ImageNet (``imagenet_PCDARTS_proxy_histo1_10p``)."""

PROXY_DARTS_CIFAR10 = Genotype(
    normal=_cell(
        (("dil_conv_5x5", 1), ("dil_conv_3x3", 0)),
        (("dil_conv_5x5", 0), ("sep_conv_5x5", 1)),
        (("dil_conv_5x5", 1), ("sep_conv_3x3", 0)),
        (("dil_conv_5x5", 4), ("sep_conv_3x3", 0)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("dil_conv_5x5", 1), ("dil_conv_5x5", 0)),
        (("dil_conv_5x5", 2), ("sep_conv_5x5", 0)),
        (("dil_conv_5x5", 2), ("skip_connect", 0)),
        (("sep_conv_5x5", 3), ("dil_conv_3x3", 0)),
    ),
    reduce_concat=_ALL_NODES,
)
"""DARTS on a 10% P1 proxy of CIFAR-10 (``cifar10_DARTS_proxy_histo1_10p``)."""

PROXY_PC_DARTS_CIFAR10 = Genotype(
    normal=_cell(
        (("max_pool_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_5x5", 2), ("sep_conv_3x3", 0)),
        (("dil_conv_3x3", 0), ("sep_conv_3x3", 2)),
        (("max_pool_3x3", 0), ("dil_conv_5x5", 2)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("max_pool_3x3", 0), ("max_pool_3x3", 2)),
        (("max_pool_3x3", 0), ("sep_conv_5x5", 3)),
        (("skip_connect", 0), ("sep_conv_5x5", 4)),
    ),
    reduce_concat=_ALL_NODES,
)
"""PC-DARTS on a 10% P1 proxy of CIFAR-10 (``cifar10_PCDARTS_proxy_histo1_10p``)."""

PROXY_ECODARTS_CIFAR10 = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 0), ("dil_conv_5x5", 1)),
        (("sep_conv_3x3", 1), ("dil_conv_3x3", 0)),
        (("dil_conv_3x3", 2), ("sep_conv_3x3", 3)),
        (("sep_conv_5x5", 3), ("dil_conv_3x3", 4)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("avg_pool_3x3", 0), ("sep_conv_5x5", 1)),
        (("dil_conv_5x5", 2), ("avg_pool_3x3", 0)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("dil_conv_3x3", 0), ("sep_conv_5x5", 3)),
    ),
    reduce_concat=_ALL_NODES,
)
"""EcoDARTS on a 10% P1 proxy of CIFAR-10 (``cifar10_EcoDARTS_c4r2_proxy_histo1_10p``)."""

PROXY_SDARTS_CIFAR10 = Genotype(
    normal=_cell(
        (("dil_conv_5x5", 1), ("dil_conv_3x3", 0)),
        (("dil_conv_5x5", 2), ("dil_conv_3x3", 1)),
        (("dil_conv_3x3", 3), ("dil_conv_3x3", 2)),
        (("dil_conv_3x3", 4), ("dil_conv_5x5", 2)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("max_pool_3x3", 1), ("skip_connect", 0)),
        (("dil_conv_5x5", 2), ("dil_conv_3x3", 0)),
        (("skip_connect", 2), ("max_pool_3x3", 0)),
        (("skip_connect", 2), ("dil_conv_5x5", 4)),
    ),
    reduce_concat=_ALL_NODES,
)
"""SDARTS on a 10% P1 proxy of CIFAR-10 (``cifar10_SDARTS_proxy_histo1_10p``)."""

PROXY_SGAS_CIFAR10 = Genotype(
    normal=_cell(
        (("sep_conv_3x3", 0), ("sep_conv_5x5", 1)),
        (("dil_conv_5x5", 0), ("dil_conv_5x5", 1)),
        (("max_pool_3x3", 0), ("dil_conv_5x5", 1)),
        (("sep_conv_5x5", 1), ("sep_conv_3x3", 2)),
    ),
    normal_concat=_ALL_NODES,
    reduce=_cell(
        (("max_pool_3x3", 0), ("sep_conv_5x5", 1)),
        (("sep_conv_5x5", 0), ("max_pool_3x3", 1)),
        (("max_pool_3x3", 0), ("dil_conv_3x3", 3)),
        (("max_pool_3x3", 0), ("sep_conv_3x3", 4)),
    ),
    reduce_concat=_ALL_NODES,
)
"""SGAS on a 10% P1 proxy of CIFAR-10 (``cifar10_SGAS_proxy_histo1_10p``)."""

GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "PC_DARTS": PC_DARTS,
    "PC_DARTS_IMAGENET": PC_DARTS_IMAGENET,
    "PROXY_DARTS_IMAGENET": PROXY_DARTS_IMAGENET,
    "PROXY_PC_DARTS_IMAGENET": PROXY_PC_DARTS_IMAGENET,
    "PROXY_DARTS_CIFAR10": PROXY_DARTS_CIFAR10,
    "PROXY_PC_DARTS_CIFAR10": PROXY_PC_DARTS_CIFAR10,
    "PROXY_ECODARTS_CIFAR10": PROXY_ECODARTS_CIFAR10,
    "PROXY_SDARTS_CIFAR10": PROXY_SDARTS_CIFAR10,
    "PROXY_SGAS_CIFAR10": PROXY_SGAS_CIFAR10,
}

# Other names for the same cells: DARTS's and PC-DARTS's own, and those of the proxy-data
# paper's code, so that its ``--arch`` arguments work unchanged (matched case-insensitively).
ALIASES: dict[str, str] = {
    "DARTS": "DARTS_V2",
    "PCDARTS": "PC_DARTS",
    "PC_DARTS_CIFAR": "PC_DARTS",
    "PC_DARTS_IMAGE": "PC_DARTS_IMAGENET",
    "IMAGENET_DARTS_PROXY_HISTO1_10P": "PROXY_DARTS_IMAGENET",
    "IMAGENET_PCDARTS_PROXY_HISTO1_10P": "PROXY_PC_DARTS_IMAGENET",
    "CIFAR10_DARTS_PROXY_HISTO1_10P": "PROXY_DARTS_CIFAR10",
    "CIFAR10_PCDARTS_PROXY_HISTO1_10P": "PROXY_PC_DARTS_CIFAR10",
    "CIFAR10_ECODARTS_C4R2_PROXY_HISTO1_10P": "PROXY_ECODARTS_CIFAR10",
    "CIFAR10_SDARTS_PROXY_HISTO1_10P": "PROXY_SDARTS_CIFAR10",
    "CIFAR10_SGAS_PROXY_HISTO1_10P": "PROXY_SGAS_CIFAR10",
}


def get_genotype(name_or_string: str | Genotype) -> Genotype:
    """A named architecture (``GENOTYPES`` or ``ALIASES``, case-insensitive; ``DARTS``
    is ``DARTS_V2``) or a genotype string."""
    if isinstance(name_or_string, Genotype):
        return name_or_string
    if not isinstance(name_or_string, str):
        raise TypeError(f"an architecture is a Genotype, a name or a genotype string, "
                        f"got {type(name_or_string).__name__}")
    key = name_or_string.strip().upper()
    key = ALIASES.get(key, key)
    if key in GENOTYPES:
        return GENOTYPES[key]
    if not name_or_string.lstrip().startswith("Genotype("):
        raise ValueError(f"unknown architecture {name_or_string!r}: one of {', '.join(GENOTYPES)} or a genotype string")
    return Genotype.parse(name_or_string)
