"""Errors a user can act on: each names the file (or config key) and the problem.

The command line turns these into one line on stderr and exit code 2 instead of a traceback.

Each can also be made from one argument, the text of a traceback that ends in it: torch's
DataLoader re-raises an error of a worker process so, ``DataError(<the worker's traceback>)``,
and the error keeps the worker's one-line message instead of becoming a RuntimeError that prints
the whole traceback ("Caught DataError in DataLoader worker process 0 ...").
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "DataError", "ScratchdetError"]


class ScratchdetError(Exception):
    """Base class for errors caused by bad input rather than by a bug."""


def _message_of(cls: type, text: str) -> str:
    """The message of the last `cls` in a formatted traceback (`module.Class: message`)."""
    prefix = f"{cls.__module__}.{cls.__qualname__}: "
    found = [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]
    return found[-1] if found else text.strip().splitlines()[-1] if text.strip() else text


class DataError(ScratchdetError):
    """A dataset file (image, XML, JSON, split list) is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path, problem: str | None = None):
        if problem is None:  # re-raised from its traceback's text (a DataLoader worker's)
            path, _, problem = _message_of(DataError, str(path)).partition(": ")
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ScratchdetError):
    """A config file has an unknown key, a missing key or a value of the wrong type or range."""

    def __init__(self, path: str | Path | None, key: str | None = None, problem: str | None = None):
        if key is None and problem is None:  # re-raised from its traceback's text
            message = _message_of(ConfigError, str(path))
            self.path, self.key, self.problem = None, "", message
            super().__init__(message)
            return
        self.path = None if path is None else str(path)
        self.key = str(key)
        self.problem = str(problem)
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{key}: {problem}")
