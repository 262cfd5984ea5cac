"""``python -m scratchdet.cli``: the same as the ``scratchdet`` command (torchrun starts workers so)."""

import sys

from . import main

sys.exit(main())
