"""Fetch and unpack the official dataset archives: resumable, checksummed, safe to extract.

- `fetch` downloads into `<dest>.part`, resuming with an HTTP Range request after an interruption
  (a server that ignores Range restarts from zero), verifies the md5/sha256 given in the workflow
  config and only then renames the file to `dest`: a file at `dest` is always complete and verified.
  Bytes done/total and the rate go to stderr (`scratchdet.progress`).
- `extract` refuses archive members that would land outside the target folder (absolute paths,
  `..`, links pointing out, device files): tar uses the standard library's 'data' filter, zip is
  checked member by member. Members are unpacked into a scratch folder beside the target and moved
  into place, so archives that share a tree (VOC 2007 trainval and test) merge.

Run as `python -m scratchdet.data.download {fetch,extract} ...` or through `register()`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from scratchdet.errors import DataError
from scratchdet.io import write_text
from scratchdet.progress import Progress

__all__ = ["CHUNK", "extract", "fetch", "file_digest", "verify"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | Path, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise DataError unless `path` matches every checksum given."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            got = file_digest(path, algorithm)
            if got.lower() != expected.lower():
                raise DataError(
                    path, f"{algorithm} is {got}, expected {expected}: a corrupt or tampered file"
                )


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "scratchdet-download"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)


def _total_size(resp, start: int) -> int | None:
    """The whole file's size, if the response says (a 206 counts from `start`)."""
    length = resp.headers.get("Content-Length", "")
    return start + int(length) if length.isdigit() else None


def _transfer(url: str, part: Path, timeout: float, name: str) -> None:
    """Append the rest of `url` to `part` (resuming at its current size); bytes to stderr."""
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the partial file is whole
            return
        raise
    with resp:
        resumed = start and resp.status == 206
        if start and not resumed:
            log.info("%s: server ignored the range request; starting over", url)
        done = start if resumed else 0
        total = _total_size(resp, done)
        # A line every 5% of a known size, every 64 MiB otherwise (and every 30 s).
        every = None if total else 64 * CHUNK
        with (
            open(part, "ab" if resumed else "wb") as fh,
            Progress(
                f"download {name}", total, initial=done, every=every, in_bytes=True
            ) as progress,
        ):
            while block := resp.read(CHUNK):
                fh.write(block)
                progress.update(len(block))


def fetch(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    manual: str | None = None,
) -> Path:
    """Download `url` to `dest` (resumable, verified); a verified `dest` is not fetched again.

    `manual` marks an archive that needs a login (VOC 2012 test): it is never fetched, and the
    error says how to obtain it.
    """
    dest = Path(dest)
    if manual:
        if not dest.exists():
            raise DataError(dest, f"cannot be downloaded automatically: {manual}")
        verify(dest, md5, sha256)
        return dest
    if not (md5 or sha256):
        raise DataError(
            dest, f"no checksum configured for {url}: refusing an unverifiable download"
        )
    if dest.exists():
        try:
            verify(dest, md5, sha256)
        except DataError as exc:  # kept: it may be the user's own copy; say what to do
            raise DataError(
                dest,
                f"{exc.problem}; this existing file is not the one expected: "
                "delete it and run again to download it afresh",
            ) from None
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _transfer(url, part, timeout, dest.name)
            break
        except (urllib.error.URLError, OSError) as exc:
            if attempt == retries:
                kept = (
                    f" (the partial file {part.name} is kept; run again to resume)"
                    if part.exists() and part.stat().st_size
                    else ""
                )
                raise DataError(
                    dest, f"download of {url} failed after {retries} tries: {exc}{kept}"
                ) from exc
            log.warning(
                "%s: %s; resuming in %ds (try %d/%d)", url, exc, 2**attempt, attempt, retries
            )
            time.sleep(2**attempt)
    try:
        verify(part, md5, sha256)
    except DataError as exc:
        part.unlink()  # resuming a corrupt file can never succeed
        raise DataError(dest, f"{exc.problem}; removed it, run again to download afresh") from None
    os.replace(part, dest)
    return dest


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def _extract_zip(archive: Path, into: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if os.path.isabs(info.filename) or not _inside(into, info.filename):
                raise DataError(
                    archive,
                    f"member {info.filename!r} would be written outside "
                    f"{into}; refusing to extract",
                )
        zf.extractall(into)
        return len(zf.infolist())


def _extract_tar(archive: Path, into: Path) -> int:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        try:
            tf.extractall(into, filter="data")
        except tarfile.FilterError as exc:
            raise DataError(archive, f"unsafe member refused: {exc}") from None
        return len(members)


def _merge_move(src: Path, dst: Path) -> None:
    """Move the tree `src` into `dst`, merging folders and replacing files."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_move(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def extract(archive: str | Path, into: str | Path, marker: str | Path | None = None) -> int:
    """Unpack a .tar(.gz) or .zip into `into`; write `marker` (a small summary) when done."""
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=into))
    try:
        if zipfile.is_zipfile(archive):
            n = _extract_zip(archive, scratch.resolve())
        elif tarfile.is_tarfile(archive):
            n = _extract_tar(archive, scratch)
        else:
            raise DataError(archive, "neither a tar nor a zip archive")
        _merge_move(scratch, into)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if marker:
        write_text(marker, f"{archive.name}: {n} members extracted into {into}\n")
    return n
