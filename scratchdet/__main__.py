"""`python -m scratchdet`: the same command line as the `scratchdet` script."""

from scratchdet.cli import main

raise SystemExit(main())
