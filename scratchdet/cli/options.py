"""The ``--out`` option of every command, declared in one place per kind of output.

Three kinds: a file or folder the command exists to write (required), a second copy of what the
command prints (optional), and a benchmark's result JSON (optional, a default file under
``benchmarks/results``). Each command passes only what differs: what it writes.
"""

from __future__ import annotations

import argparse

from scratchdet.benchmark.fps import RESULTS_DIR

__all__ = ["add_also_out", "add_out", "add_result_out"]


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out``, required: the file or folder the command writes (``what``, its help)."""
    parser.add_argument("--out", required=True, help=what)


def add_also_out(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out``, optional: also write what the command prints (``what``, its help)."""
    parser.add_argument("--out", help=what)


def add_result_out(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out`` of a benchmark: its result JSON, by default ``benchmarks/results/<name>``
    (``name`` may hold ``<device>``, which the benchmark fills in)."""
    parser.add_argument("--out", help=f"result JSON (default {RESULTS_DIR}/{name})")
