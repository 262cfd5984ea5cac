"""Errors a user can act on: each names the file (or config key) and the problem.

The command line turns these into one line on stderr and exit code 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "DataError", "ScratchdetError"]


class ScratchdetError(Exception):
    """Base class for errors caused by bad input rather than by a bug."""


class DataError(ScratchdetError):
    """A dataset file (image, XML, JSON, split list) is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ScratchdetError):
    """A config file has an unknown key, a missing key or a value of the wrong type or range."""

    def __init__(self, path: str | Path | None, key: str, problem: str):
        self.path = None if path is None else str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{key}: {problem}")
