"""The ``proxyfast`` command: a thin shell over the Python API.

Each verb group adds its commands here; :mod:`proxyfast.cli.common` turns every error
into one line, ``proxyfast COMMAND: error: ...``, with exit status 2, and every command
checks its arguments and paths before it starts any long work.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._version import __version__
from . import bench, loaders, pipeline, proxy, search, train
from .common import Parser, line_buffered_output, run_command

__all__ = ["build_parser", "main"]

# In the order of `proxyfast --help`: the proxy first, then the stages that make one and use it.
_VERB_GROUPS = (proxy, loaders, pipeline, bench, search, train)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of every command, and each command's handler by name."""
    parser = Parser(prog="proxyfast", description="Proxy data selection for neural architecture search.")
    parser.add_argument("--version", action="version", version=f"proxyfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for group in _VERB_GROUPS:
        handlers.update(group.add_commands(commands))
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    line_buffered_output()
    parser, handlers = build_parser()
    return run_command(lambda: parser.parse_args(argv), handlers)
