"""``python -m scratchdet.cli``: the same as the ``scratchdet`` command (torchrun starts workers
so)."""

import sys

from scratchdet.cli import main

sys.exit(main())
