"""The ``proxyfast`` command line: one module per group of verbs over the Python API.

:mod:`.main` builds the parser and runs a command; :mod:`.common` holds the arguments and
the error handling every command shares; :mod:`.pipeline` (pretrain, score, pipeline),
:mod:`.search` (search), :mod:`.train` (train), :mod:`.loaders` (beton) and :mod:`.bench`
(bench) each add their verbs.
"""

from .main import main

__all__ = ["main"]
