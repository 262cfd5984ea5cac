"""Speed benchmarks: training throughput, inference latency/FPS, evaluation time.

Commands: ``scratchdet benchmark train|infer|eval|table`` (see ``cli.register``); results are JSON
files under ``benchmarks/results/`` (``common.Record``); ``PAPER_FPS`` holds the papers' FPS that
``infer`` writes beside its own.
"""

from __future__ import annotations

from scratchdet.benchmark.fps import PAPER_FPS

__all__ = ["PAPER_FPS"]
