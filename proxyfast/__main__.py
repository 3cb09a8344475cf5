"""``python -m proxyfast``: the same as the ``proxyfast`` command."""

from .cli import main

raise SystemExit(main())
