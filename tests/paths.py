"""Where the tests find the repository and the shared data beside it (`../shared`, absent on
most machines: the tests that need it skip)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["KANGAROO", "ROOT", "SHARED"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / ".." / "shared"
KANGAROO = SHARED / "datasets" / "kangaroo"
"""Real VOC-format photographs (annots/, images/)."""
