"""Superseded by ``scratchdet benchmark eval`` (scratchdet/benchmark/eval.py), which generates the
same VOC07-test-sized case, times evaluate() / the matching + AP / the naive reference in one run,
checks they agree and writes benchmarks/results/eval_cpu.json. Kept as a shortcut:

    .venv/bin/python benchmarks/eval_reference.py [--repeats 3] [--scale 1.0] [--out FILE]
"""

from __future__ import annotations

import sys

from scratchdet.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
