#!/usr/bin/env bash
# Every CPU component benchmark against its reference (torchvision, pycocotools or plain Python),
# then the tables of benchmarks/README.md, in one command (train-step and eval-startup took 20
# and 4 minutes on 2 cores under a load average of about 10; less on an idle machine):
#
#   bash benchmarks/cpu.sh
#
# Each writes benchmarks/results/<name>_cpu.json (the schema is in benchmarks/README.md);
# `scratchdet benchmark table` renders every result file between the README's markers.
# ONLY="train-step eval-startup" runs a subset (the table is always regenerated from every file).
# The compiled training step is not measured on a CPU (inductor compiles it for many minutes on
# two cores; tests/test_compile.py checks it compiles); benchmarks/gpu.sh measures it on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=${ONLY:-"pipeline matching postprocess train-step eval-startup"}
scratchdet() { python -m scratchdet.cli "$@"; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

want pipeline && scratchdet benchmark pipeline
want matching && scratchdet benchmark matching --device cpu
want postprocess && scratchdet benchmark postprocess --device cpu
want train-step && scratchdet benchmark train-step --device cpu \
    --models dsod300_smallest scratchdet300 --batch-size 4 --steps 1 --warmup 1 --repeats 5
want eval-startup && scratchdet benchmark eval-startup --images 300 --repeats 5
scratchdet benchmark table --write benchmarks/README.md
