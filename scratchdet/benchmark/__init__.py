"""Speed benchmarks: training throughput, inference latency/FPS, evaluation time.

Commands: ``scratchdet benchmark train|infer|eval|table`` (see ``cli.register``); results are JSON
files under ``benchmarks/results/`` (``common.Record``). ``measured_fps(model)`` gives the reports
a measured FPS column with the device it was measured on.
"""

from __future__ import annotations

from .fps import PAPER_FPS, measured_fps

__all__ = ["PAPER_FPS", "measured_fps"]
