"""Old module paths that still import: each names the module that now holds the code.

``import proxyfast.pretrain`` (or ``from proxyfast.binning import histogram``) gives the
module at its new home, the very same module object, so that a name patched through
either path is patched for both.
"""

from __future__ import annotations

import importlib
import sys

MOVED_MODULES = {
    "proxyfast.binning": "proxyfast.selection.binning",
    "proxyfast.forgetting": "proxyfast.baseline",
    "proxyfast.io": "proxyfast.scoring.entropy_list",
    "proxyfast.nas.ops": "proxyfast.nas.operations",
    "proxyfast.pretrain": "proxyfast.baseline.train",
    "proxyfast.proxyset": "proxyfast.selection.proxyset",
    "proxyfast.report": "proxyfast.selection.summary",
}


def install() -> None:
    """Files each new module under its old name too. Filed up front, an old name never
    passes through the import machinery, which would bind the module over a package
    attribute of the same name (``proxyfast.forgetting`` is a function)."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
