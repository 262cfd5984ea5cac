"""Version datasets and trained rows with DVC, each scale on its own remote.

What is tracked where (`dvc pull -R results/<scale>` restores one scale's rows):

- `data.dvc`, at the repository root: the default scale's dataset folder
  (`data/synth/<recipe>`), so that `dvc pull data.dvc` restores the data alone;
- `results/<scale>/<table>/<row>/<digest>.dvc`: one finished run folder (one row, one run
  config: `dvc pull -R results/<scale>/<table>/<row>` restores one row);
- `results/<scale>/baselines.dvc`: the scale's image-blind baselines.

Every scale but the default one is a DVC repository of its own inside this one
(`dvc init --subdir results/<scale>`, made by its first push): the repository's bare `dvc pull`
does not descend into it, so a fresh clone restores the default scale offline even after a lab
has committed the .dvc files of its scales, whose remote is out of reach there. DVC 3 tracks no
output outside its repository, so such a scale's dataset is not versioned with it: the workflow
makes it again (a synthetic dataset from its recipe, the official ones downloaded with
checksums, or linked from a lab's copy with `existing_data`).

Remotes (`.dvc/config`): the repository's default remote `shipped` is the committed folder
`dvc-remote/` (a path relative to `.dvc/`), holding the default scale's artifacts, so a clone
restores them anywhere, offline. The default scale's weights (two training steps) are not
versioned at all (`.dvcignore`): its run folders keep their configs, training logs, statuses,
detections and metrics, and a job that needs the weights retrains the row. Every other scale
goes to the lab's own remote `lab`, which each clone configures (`dvc remote add --local lab
URL`); its .dvc files name that remote (`remote: lab`), so that a plain `dvc pull` fetches
each file from where it was pushed.

`push` and `pull` check that every remote they use answers before DVC runs, so an unreachable
or unconfigured remote is one line naming it and the command that sets it. A remote is
configured once per clone, in the repository (`dvc remote add --local lab URL`); `push` and `pull`
copy it into a scale's own DVC repository (its `.dvc/config.local`) before DVC runs there.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

from scratchdet.errors import ScratchdetError
from scratchdet.run_folder import RunPaths
from scratchdet.yaml_io import load_yaml

__all__ = [
    "DATASET_DVC",
    "LAB_REMOTE",
    "REMOTE_TIMEOUT_S",
    "SHIPPED_REMOTE",
    "SHIPPED_SCALE",
    "check_remote",
    "dvc_remote_of",
    "dvc_root",
    "finished_rows",
    "pull",
    "push",
    "remote_url",
    "scale_dataset",
    "scale_remote",
    "verify",
    "verify_restored",
]

SHIPPED_REMOTE = "shipped"
"""The repository's default remote: the committed folder dvc-remote/ (default scale only)."""
LAB_REMOTE = "lab"
"""The remote of every other scale, configured per clone (`dvc remote add --local lab URL`)."""
SHIPPED_SCALE = "default"
REMOTE_TIMEOUT_S = 60
"""How long a remote may take to answer whether its folder exists."""
DATASET_DVC = Path("data.dvc")
"""The default scale's dataset folder, tracked at the repository root (`dvc pull data.dvc`)."""


def finished_rows(results: Path) -> list[Path]:
    """Run folders (<table>/<row>/<digest>) whose training ended, finished or diverged."""
    ended = RunPaths(Path("*", "*", "*")).status  # <table>/<row>/<digest>/train/status.json
    return sorted(p.parent.parent for p in results.glob(ended.as_posix()))


def scale_remote(results: Path) -> str | None:
    """The remote a scale's artifacts go to: the repository's default remote (None) for the
    default scale, `lab` for every other."""
    return None if results.name == SHIPPED_SCALE else LAB_REMOTE


def scale_dataset(results: Path, repo: Path = Path(".")) -> Path | None:
    """The dataset folder of the scale whose results are `results` (results/<scale>), relative
    to the repository: a synthetic scale's generated folder; None for the official datasets."""
    from scratchdet.workflow.datasets import dataset_dir

    scale_file = Path("config", "scales", f"{results.name}.yaml")
    if not (repo / scale_file).is_file():
        raise ScratchdetError(
            f"{scale_file}: no such scale file for the results folder "
            f"{results} (give --data DIR or --no-data)"
        )
    scale = load_yaml(repo / scale_file)
    if scale.get("dataset") != "synth":
        return None
    config = load_yaml(repo / "config" / "config.yaml") or {}
    return dataset_dir(scale, config.get("data_dir", "data"))


def _dvc(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # DVC's message is its first paragraph, and the first line of the next (the details
        # of a validation error come after a blank line, then a code frame).
        paragraphs = re.split(r"\n\s*\n", (proc.stderr or proc.stdout).strip())
        message = " ".join([paragraphs[0], *(p.splitlines()[0] for p in paragraphs[1:2])])
        raise ScratchdetError(f"dvc {args[0]} failed: {_one_line(message)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _open_repo(repo: Path) -> Any:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(repo))
    except NotDvcRepoError:
        raise ScratchdetError(
            f"{repo.resolve()}: not a DVC repository (run this in the scratchdet checkout)"
        ) from None


def remote_url(repo: Path, name: str | None) -> tuple[str, str]:
    """(name, url) of the remote `name` (None: the repository's default remote), as the merged
    DVC config (.dvc/config, then .dvc/config.local) sets it."""
    with _open_repo(repo) as dvc_repo:
        config = dvc_repo.config
        name = name or config["core"].get("remote")
        if not name:
            raise ScratchdetError(
                f"{repo / '.dvc' / 'config'}: no default DVC remote (core.remote)"
            )
        remote = config["remote"].get(name)
        if remote is None:
            raise ScratchdetError(
                f"DVC remote {name!r} is not configured in this clone: add it "
                f"with `dvc remote add --local {name} <URL>`"
            )
        return name, str(remote["url"])


def check_remote(repo: Path, name: str | None, for_push: bool = False) -> str:
    """Raise a one-line ScratchdetError unless the remote `name` (None: the default) answers:
    its folder exists (for a push, its parent is enough: DVC creates the folder). Returns the
    remote's name."""
    name, url = remote_url(repo, name)

    def probe() -> str | None:
        with _open_repo(repo) as dvc_repo:
            remote = dvc_repo.cloud.get_remote(name)
            fs, path = remote.fs, remote.path
            if fs.exists(path):
                return None
            if for_push and fs.exists(fs.parent(path)):
                return None
            return f"no folder {path}" if for_push else f"no folder {path} (nothing pushed yet?)"

    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["problem"] = probe()
        except Exception as exc:
            answer["error"] = exc

    # A daemon thread: a remote that never answers does not hold the process at exit.
    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(REMOTE_TIMEOUT_S)
    if thread.is_alive():
        problem = f"no answer within {REMOTE_TIMEOUT_S} s"
    elif isinstance(answer.get("error"), ScratchdetError):
        raise answer["error"]
    elif "error" in answer:
        problem = _one_line(f"{type(answer['error']).__name__}: {answer['error']}")
    else:
        problem = answer["problem"]
    if problem:
        raise ScratchdetError(
            f"DVC remote {name!r} ({url}) cannot be reached: {problem}; set its "
            f"url with `dvc remote modify --local {name} url <URL>`"
        )
    return name


def dvc_remote_of(dvc_file: Path) -> str | None:
    """The remote a .dvc file names for its output (None: the repository's default)."""
    outs = (load_yaml(dvc_file) or {}).get("outs") or [{}]
    return outs[0].get("remote")


def _set_remote(dvc_file: Path, remote: str | None) -> None:
    """Name `remote` in every output of `dvc_file` (None: remove the name: the default). DVC's
    own YAML writer, which quotes what YAML 1.2 would misread (a digest like 7120035e42 is a
    float to DVC's reader unless quoted)."""
    from dvc.utils.serialize import modify_yaml

    if dvc_remote_of(dvc_file) == remote:
        return
    with modify_yaml(str(dvc_file)) as content:
        for out in content["outs"]:
            out.pop("remote", None)
            if remote:
                out["remote"] = remote


def dvc_root(path: Path, repo: Path = Path(".")) -> Path:
    """The DVC repository `path` (relative to `repo`) belongs to, relative to `repo`: the nearest
    folder from `path` up to `repo` holding a `.dvc` folder (a scale's own repository, or `.`)."""
    path = _in_repo(path, repo)
    for folder in [path, *path.parents]:
        if folder == Path(".") or (repo / folder / ".dvc").is_dir():
            return folder
    return Path(".")


def _scale_repo(results: Path, repo: Path) -> Path:
    """The DVC repository of the scale whose results are `results` (relative to `repo`): the
    repository itself for the default scale; for every other, results/<scale> made a DVC
    repository of its own (`dvc init --subdir`, its .dvcignore as the repository's) if it is not
    one yet, so that the repository's bare `dvc pull` leaves it alone."""
    if scale_remote(results) is None:
        return Path(".")
    if not (repo / results / ".dvc").is_dir():
        (repo / results).mkdir(parents=True, exist_ok=True)
        _dvc("init", "--subdir", "--quiet", cwd=repo / results)
        with open(repo / results / ".dvcignore", "a") as fh:
            fh.write(
                "\n# Locks and interrupted writes (the repository's .dvcignore says why).\n"
                ".*.lock\n.*.tmp\n"
            )
    return results


def _share_remote(repo: Path, sub: Path, name: str) -> None:
    """Copy the remote `name` as this clone configures it (the repository's merged DVC config)
    into the scale repository `sub`'s .dvc/config.local, so one `dvc remote add --local` serves
    every scale. DVC writes relative folder urls relative to the new config's folder."""
    if sub == Path("."):
        return
    with _open_repo(repo) as dvc_repo:
        remote = dict(dvc_repo.config["remote"][name])
    with _open_repo(repo / sub) as dvc_repo, dvc_repo.config.edit("local") as conf:
        conf.setdefault("remote", {})[name] = remote


def _track_dataset(data: Path, results: Path, repo: Path) -> Path:
    """Track the default scale's dataset folder `data` as data.dvc at the repository root (the
    folder itself is ignored by git; the .dvc file names it relative to the root)."""
    if scale_remote(results) is not None:
        raise ScratchdetError(
            f"{data}: the dataset of {results} cannot be versioned with it (DVC tracks nothing "
            f"outside the scale's own DVC repository {results}); the workflow makes it again "
            "(push with --no-data)"
        )
    dvc_file = DATASET_DVC
    rel = Path(os.path.relpath(repo / data, repo)).as_posix()
    if not (repo / dvc_file).exists() or (
        (load_yaml(repo / dvc_file) or {}).get("outs", [{}])[0].get("path") != rel
    ):
        from dvc.utils.serialize import dump_yaml

        dump_yaml(str(repo / dvc_file), {"outs": [{"path": rel}]})
    _dvc("commit", "--force", str(dvc_file), cwd=repo)
    return dvc_file


def push(
    results: Path, data: Path | None, repo: Path = Path("."), remote: str | None = None
) -> list[Path]:
    """Track the dataset folder `data` and each finished row of `results`, and push them to
    `remote` (default: the scale's, `scale_remote`); returns the .dvc files to commit."""
    results = _in_repo(results, repo)
    rows = finished_rows(repo / results)
    if not rows:
        raise ScratchdetError(f"{results}: no finished training row to push")
    if data is not None and not (repo / data).is_dir():
        raise ScratchdetError(f"{data}: no such data folder to push (give --data DIR or --no-data)")
    name = check_remote(repo, remote or scale_remote(results), for_push=True)
    dataset = None if data is None else _track_dataset(_in_repo(data, repo), results, repo)
    sub = _scale_repo(results, repo)
    _share_remote(repo, sub, name)
    # The image-blind baselines of the scale (derived from the data alone) travel with the rows,
    # so a restored clone regenerates its reports without recomputing them.
    baselines = [repo / results / "baselines"] if (repo / results / "baselines").is_dir() else []
    targets = [p.relative_to(repo / sub) for p in rows + baselines]
    _dvc("add", *(str(t) for t in targets), cwd=repo / sub)
    dvc_files = [sub / t.with_name(t.name + ".dvc") for t in targets]
    # Name the remote in each .dvc file unless it is its DVC repository's default one.
    default_name = _default_remote(repo / sub)
    for f in dvc_files:
        _set_remote(repo / f, None if name == default_name else name)
    _dvc("push", *(str(f.relative_to(sub)) for f in dvc_files), cwd=repo / sub)
    if dataset is not None:
        _set_remote(repo / dataset, None if name == _default_remote(repo) else name)
        _dvc("push", str(dataset), cwd=repo)
        dvc_files.insert(0, dataset)
    if sub != Path("."):  # the scale's DVC repository, to commit with its .dvc files
        dvc_files[:0] = [sub / ".dvc" / "config", sub / ".dvc" / ".gitignore", sub / ".dvcignore"]
    return dvc_files


def _in_repo(path: Path, repo: Path) -> Path:
    """`path` relative to the repository, as DVC's targets are (unchanged if outside it)."""
    rel = Path(os.path.relpath(repo / path, repo))
    return path if rel.parts[:1] == ("..",) else rel


def _default_remote(repo: Path) -> str | None:
    with _open_repo(repo) as dvc_repo:
        return dvc_repo.config["core"].get("remote")


def pull(results: Path, repo: Path = Path("."), remote: str | None = None) -> list[Path]:
    """`dvc pull` every .dvc file under `results` (a scale's, with data.dvc for the default
    scale, or one table's or row's folder), after checking that each remote they name (or
    `remote`) answers; returns the .dvc files."""
    results = _in_repo(results, repo)
    dvc_files = _dvc_files(repo / results, repo)
    if dvc_files and results.name == SHIPPED_SCALE and (repo / DATASET_DVC).is_file():
        dvc_files.insert(0, DATASET_DVC)  # the whole default scale: its dataset too
    if not dvc_files:
        raise ScratchdetError(
            f"{results}: no .dvc file to pull (nothing of it was pushed and committed)"
        )
    sub = dvc_root(results, repo)
    for name in sorted(
        {remote} if remote else {dvc_remote_of(repo / f) for f in dvc_files}, key=str
    ):
        name = check_remote(repo, name)
        _share_remote(repo, sub, name)
    _dvc(
        "pull",
        *(["-r", remote] if remote else []),
        *(str(f.relative_to(sub)) for f in dvc_files),
        cwd=repo / sub,
    )
    verify(dvc_files, repo)
    return dvc_files


def _dvc_files(folder: Path, repo: Path) -> list[Path]:
    """The .dvc files under `folder`, relative to `repo` (a scale repository's `.dvc` folder is
    not one)."""
    return sorted(p.relative_to(repo) for p in folder.rglob("*.dvc") if p.is_file())


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(dvc_files: list[Path], repo: Path = Path(".")) -> int:
    """Check every file the .dvc files restored against the MD5 its producer's `dvc add`
    recorded (the .dvc file, and for a folder its listing in the cache, itself checked against
    the .dvc file); returns the number of files checked.

    DVC trusts its cache: an object altered in place (same size and time) or a corrupt object
    fetched from a remote is checked out as it is, and `dvc status` says up to date. A mismatch is
    one line naming the file, so no report reads a wrong number from it."""
    checked = 0
    by_root: dict[Path, list[Path]] = {}
    for dvc_file in dvc_files:
        by_root.setdefault(dvc_root(Path(dvc_file).parent, repo), []).append(Path(dvc_file))
    for root, files in by_root.items():
        checked += _verify(files, repo, root)
    return checked


def _verify(dvc_files: list[Path], repo: Path, root: Path) -> int:
    """`verify` for the .dvc files of the DVC repository `root`, whose cache holds their
    listings."""
    import json

    with _open_repo(repo / root) as dvc_repo:
        cache = dvc_repo.cache.local
        checked = 0
        for dvc_file in dvc_files:
            for out in (load_yaml(repo / dvc_file) or {}).get("outs") or []:
                oid, target = str(out.get("md5") or ""), repo / Path(dvc_file).parent / out["path"]
                if not oid:
                    continue
                if not oid.endswith(".dir"):
                    _check_md5(target, oid, dvc_file)
                    checked += 1
                    continue
                listing = Path(cache.oid_to_path(oid))
                _check_md5(
                    listing,
                    oid[: -len(".dir")],
                    dvc_file,
                    what="DVC cache listing of "
                    f"{target.relative_to(repo) if target.is_relative_to(repo) else target}",
                )
                for entry in json.loads(listing.read_text()):
                    _check_md5(target / entry["relpath"], entry["md5"], dvc_file)
                    checked += 1
        return checked


def _check_md5(path: Path, expected: str, dvc_file: Path, what: str = "") -> None:
    if not path.is_file():
        raise ScratchdetError(f"{path}: missing after the pull, although {dvc_file} lists it")
    found = _md5(path)
    if found != expected:
        raise ScratchdetError(
            f"{path}: {what + ' ' if what else ''}corrupt: MD5 {found}, but {dvc_file} records "
            f"{expected} (a damaged copy in the DVC cache or remote: delete the file and "
            f".dvc/cache/files/md5/{expected[:2]}/{expected[2:]}, pull again; if it comes back "
            "damaged, push it again from a good copy or retrain the row)"
        )


def verify_restored(paths: list[Path]) -> None:
    """Check each file that DVC restored and has not been rewritten since (DVC's state records
    it as it is now) against the MD5 DVC vouches for: a report reads no number from a damaged
    cache or remote copy even after a plain `dvc pull`. Files outside a DVC repository, or made
    again since (a retrained row), are not DVC's to vouch for and are left alone."""
    roots: dict[Path, list[Path]] = {}
    for path in paths:
        path = Path(path).resolve()
        root = next((d for d in path.parents if (d / ".dvc").is_dir()), None)
        if root is not None and path.is_file():
            roots.setdefault(root, []).append(path)
    for root, files in roots.items():
        vouched = _vouched_md5(root, files)
        for path, expected in vouched.items():
            found = _md5(path)
            if found != expected:
                raise ScratchdetError(
                    f"{path}: corrupt: MD5 {found}, but DVC restored it as {expected} (a damaged "
                    "copy in the DVC cache or remote); run `scratchdet artifacts verify` and pull "
                    "it again"
                )


def _vouched_md5(root: Path, files: list[Path]) -> dict[Path, str]:
    """file -> the MD5 DVC's state records for it as it is now (files it does not know: left
    out). Any failure to read DVC's state leaves the files unchecked rather than failing a
    report."""
    try:
        with _open_repo(root) as dvc_repo:
            out = {}
            for path in files:
                _, info = dvc_repo.state.get(str(path), dvc_repo.fs)
                if info is not None and info.name == "md5" and info.value:
                    out[path] = str(info.value)
            return out
    except Exception as exc:
        import logging

        logging.getLogger(__name__).info(
            "DVC state of %s not read (%s): files not verified", root, exc
        )
        return {}
