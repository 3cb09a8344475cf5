"""Old module paths that still import: each names the module that now holds the code.

``import proxyfast.pretrain`` (or ``from proxyfast.binning import histogram``) gives the
module at its new home, the very same module object, so that a name patched through
either path is patched for both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED_MODULES = {
    "proxyfast.binning": "proxyfast.selection.binning",
    "proxyfast.forgetting": "proxyfast.baseline.forgetting_events",
    "proxyfast.io": "proxyfast.scoring.entropy_list",
    "proxyfast.pretrain": "proxyfast.baseline.train",
    "proxyfast.proxyset": "proxyfast.selection.proxyset",
    "proxyfast.report": "proxyfast.selection.summary",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module) -> None:
        # The module ran at its new home; the import system only files it under the old name.
        pass


def install() -> None:
    """Makes the old paths importable (once per interpreter)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
