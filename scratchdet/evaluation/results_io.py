"""Detections in the COCO results format, read straight into numpy columns.

A VOC07 test run writes ~1M detections (~150 MB of JSON). Parsing that into Python dicts is most of
an evaluation's time, so:

- msgspec decodes the file straight into typed structs (types checked while parsing, no dicts
  built: ~4x faster than orjson into dicts);
- a file msgspec rejects is parsed again with orjson and each field is converted with one C-level
  pass (`np.fromiter(map(itemgetter(...)))`), types checked as sets of types rather than one by
  one, so that the error names the detection and the field;
- the cyclic garbage collector is paused meanwhile: a million new containers would otherwise make
  it rescan the heap over and over (that alone doubles json.load's time).

Both parsers are hard dependencies (pyproject.toml); the dict path also serves `as_detections` for
in-memory lists, so what is accepted is the same either way.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from scratchdet.errors import DataError

__all__ = [
    "DET_DTYPE",
    "FIELDS",
    "TABLE_MAX",
    "Source",
    "as_detections",
    "detections_from_list",
    "detections_to_list",
    "float_rows",
    "index_of",
    "load_detections",
    "lookup",
]

#: One record per detection. `x, y, w, h` is the COCO box in pixels of the original image.
DET_DTYPE = np.dtype(
    [
        ("image_id", np.int64),
        ("category_id", np.int64),
        ("x", np.float64),
        ("y", np.float64),
        ("w", np.float64),
        ("h", np.float64),
        ("score", np.float64),
    ]
)
assert DET_DTYPE.itemsize == 7 * 8  # no padding: `float_rows` relies on it

FIELDS = ("image_id", "category_id", "bbox", "score")

Source = str | Path


class _Det(msgspec.Struct, gc=False):
    """One COCO result; unknown keys (id, area, segmentation) are skipped by the decoder."""

    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float


_DECODER = msgspec.json.Decoder(list[_Det])


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: parsing creates ~2M containers and none of them form cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(raw: bytes, path: Source) -> Any:
    try:
        return orjson.loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError
        raise DataError(path, f"malformed JSON: {exc}{_non_finite_hint(raw, exc)}") from None


def _non_finite_hint(raw: bytes, exc: ValueError) -> str:
    """Why a parse failed, where the cause is a NaN or an infinity (JSON has neither): the
    detector produced non-finite scores or boxes, which no metric can rank."""
    pos = getattr(exc, "pos", None)
    window = raw[max(0, (pos or 0) - 12) : (pos or 0) + 12] if pos is not None else raw[:0]
    for token in (b"NaN", b"Infinity"):
        if token in window or (pos is None and token in raw):
            return (
                f" ({token.decode()}: the detections hold non-finite numbers, which "
                "JSON does not allow and no metric can rank; the model that wrote them "
                "diverged or is broken)"
            )
    return ""


def load_detections(path: Source) -> np.ndarray:
    """Read a COCO results file into a `DET_DTYPE` array, in file order.

    Raises DataError naming the file for a missing or malformed file, a top level that is not a
    list, or a detection with a missing field or a value of the wrong type or range.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, expected a JSON detections file") from None
    with _gc_paused():
        fast = _from_msgspec(raw, path)
        if fast is not None:
            return fast
        items = _parse(raw, path)
        del raw
        return detections_from_list(items, path)


def _from_msgspec(raw: bytes, path: Source) -> np.ndarray | None:
    """Typed decode; None when msgspec rejects the file (the dict path then says why)."""
    try:
        items = _DECODER.decode(raw)
    except msgspec.DecodeError:  # includes ValidationError
        return None
    n = len(items)
    out = np.empty(n, dtype=DET_DTYPE)
    try:
        for key in ("image_id", "category_id"):
            out[key] = np.fromiter(map(attrgetter(key), items), np.int64, n)
    except OverflowError:  # msgspec accepts up to 2**64 - 1
        return None
    out["score"] = np.fromiter(map(attrgetter("score"), items), np.float64, n)
    xywh = np.fromiter(
        itertools.chain.from_iterable(map(attrgetter("bbox"), items)), np.float64, 4 * n
    ).reshape(n, 4)
    _check_values(out, xywh, path)
    return out


def _check_values(out: np.ndarray, xywh: np.ndarray, source: Source) -> None:
    """Finite scores and boxes, w, h >= 0; then store the box columns into `out`."""
    if not np.isfinite(out["score"]).all():
        i = int(np.flatnonzero(~np.isfinite(out["score"]))[0])
        raise DataError(
            source,
            f"detection {i}: score {out['score'][i]} is not finite (the "
            "model that wrote it diverged or is broken)",
        )
    bad = ~np.isfinite(xywh).all(axis=1) | (xywh[:, 2] < 0) | (xywh[:, 3] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            source,
            f"detection {i}: bbox {xywh[i].tolist()} must be finite with "
            "non-negative width and height",
        )
    for j, key in enumerate("xywh"):
        out[key] = xywh[:, j]


def _first_bad(items: Sequence[Any], ok: Callable[[Any], bool]) -> int:
    """Index of the first item failing `ok` (only called once a failure is known to exist)."""
    return next(i for i, item in enumerate(items) if not ok(item))


def _is_int(v: Any) -> bool:
    return type(v) is int


def detections_from_list(items: Any, source: Source = "<detections>") -> np.ndarray:
    """Convert a COCO results list (`[{"image_id", "category_id", "bbox", "score"}, ...]`).

    Extra keys (`id`, `area`, `segmentation`) are ignored. Ids must be JSON integers, scores and
    box values finite numbers, and widths/heights non-negative.
    """
    if not isinstance(items, list):
        raise DataError(
            source,
            f"expected a JSON list of detections (COCO results format), got {type(items).__name__}",
        )
    n = len(items)
    out = np.empty(n, dtype=DET_DTYPE)
    if n == 0:
        return out
    if set(map(type, items)) != {dict}:
        i = _first_bad(items, lambda d: type(d) is dict)
        raise DataError(
            source,
            f"detection {i} is {type(items[i]).__name__}, expected an object "
            f"with fields {', '.join(FIELDS)}",
        )
    columns: dict[str, list] = {}
    for key in FIELDS:
        try:
            columns[key] = list(map(itemgetter(key), items))
        except KeyError:
            i = _first_bad(items, lambda d, key=key: key in d)
            raise DataError(
                source, f"detection {i} has no '{key}' field (expected {', '.join(FIELDS)})"
            ) from None

    for key in ("image_id", "category_id"):
        values = columns[key]
        if set(map(type, values)) != {int}:
            i = _first_bad(values, _is_int)
            raise DataError(source, f"detection {i}: {key} must be an integer, got {values[i]!r}")
        try:
            out[key] = np.fromiter(values, np.int64, n)
        except OverflowError:
            i = _first_bad(values, lambda v: -(2**63) <= v < 2**63)
            raise DataError(
                source, f"detection {i}: {key} {values[i]} does not fit in 64 bits"
            ) from None

    scores = columns["score"]
    if not set(map(type, scores)) <= {int, float}:
        i = _first_bad(scores, lambda v: type(v) in (int, float))
        raise DataError(source, f"detection {i}: score must be a number, got {scores[i]!r}")
    out["score"] = np.fromiter(scores, np.float64, n)

    boxes = columns["bbox"]
    if set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}:
        i = _first_bad(boxes, lambda b: type(b) is list and len(b) == 4)
        raise DataError(
            source, f"detection {i}: bbox must be a list [x, y, w, h], got {boxes[i]!r}"
        )
    flat = itertools.chain.from_iterable(boxes)
    if not set(map(type, flat)) <= {int, float}:
        i = _first_bad(boxes, lambda b: all(type(v) in (int, float) for v in b))
        raise DataError(source, f"detection {i}: bbox values must be numbers, got {boxes[i]!r}")
    xywh = np.fromiter(itertools.chain.from_iterable(boxes), np.float64, 4 * n).reshape(n, 4)
    _check_values(out, xywh, source)
    return out


def as_detections(dets: Any, source: Source = "<detections>") -> np.ndarray:
    """Accept a `DET_DTYPE` array (checked) or a COCO results list (converted)."""
    if isinstance(dets, np.ndarray):
        if dets.dtype != DET_DTYPE:
            raise DataError(
                source, f"detections array has dtype {dets.dtype}, expected {DET_DTYPE}"
            )
        dets = np.ascontiguousarray(dets.reshape(-1))
        values = float_rows(dets)[:, 2:]  # x, y, w, h, score
        if not np.isfinite(values).all() or (values[:, 2:4] < 0).any():
            raise DataError(
                source,
                "detections must have finite boxes and scores and non-negative width and height",
            )
        return dets
    return detections_from_list(dets, source)


def float_rows(dets: np.ndarray) -> np.ndarray:
    """A contiguous DET_DTYPE array seen as [N, 7] float64 rows (columns 2..6 = x, y, w, h, score).

    Every field is 8 bytes, so this is a free view; columns 0 and 1 (the ids) are meaningless.
    """
    return dets.view(np.float64).reshape(len(dets), 7)


def detections_to_list(dets: np.ndarray) -> list[dict[str, Any]]:
    """The inverse of `detections_from_list` (Python ints and floats, as json would give)."""
    cols = [dets[k].tolist() for k in ("image_id", "category_id", "x", "y", "w", "h", "score")]
    return [
        {"image_id": i, "category_id": c, "bbox": [x, y, w, h], "score": s}
        for i, c, x, y, w, h, s in zip(*cols)
    ]


#: Largest id range looked up through a dense table (int32, 4 bytes per id) instead of a binary
#: search; a gather is ~10x faster than `np.searchsorted` for a million queries.
TABLE_MAX = 1 << 24


def lookup(known: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value, its position in the sorted unique int array `known`, and whether it is there.

    Positions of values that are not found are unspecified.
    """
    if len(known) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    lo, hi = int(known[0]), int(known[-1])
    if hi - lo < TABLE_MAX:
        table = np.full(hi - lo + 2, -1, np.int32)  # the last slot catches out-of-range values
        table[known - lo] = np.arange(len(known), dtype=np.int32)
        inside = (values >= lo) & (values <= hi)
        pos = table[np.where(inside, values - lo, hi - lo + 1)]
        return pos, pos >= 0
    pos = np.minimum(np.searchsorted(known, values), len(known) - 1)
    return pos, known[pos] == values


def index_of(
    values: np.ndarray,
    known: np.ndarray,
    *,
    key: str,
    source: Source = "<detections>",
    gt_source: Source = "ground truth",
) -> np.ndarray:
    """Positions of `values` in the sorted unique array `known`; DataError for values not there.

    A detection on an image or category the ground truth lacks would otherwise be dropped
    (the devkit ignores it, pycocotools asserts) and the score would describe another test set.
    """
    pos, found = lookup(known, values)
    if not found.all():
        missing = np.unique(values[~found])
        shown = ", ".join(str(v) for v in missing[:5].tolist())
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            source,
            f"{int((~found).sum())} detections have a {key} that is not in "
            f"the ground truth {gt_source}: {shown}{more}",
        )
    return pos.astype(np.int64, copy=False)
