"""`python -m scratchdet`: the same command line as the `scratchdet` script."""

from .cli import main

raise SystemExit(main())
