"""``scratchdet artifacts push|pull|verify``: version datasets and trained rows with DVC."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def cmd_push(args: argparse.Namespace) -> None:
    from scratchdet.artifacts import push, scale_dataset, scale_remote

    results = Path(args.results)
    # A scale other than the default one is a DVC repository of its own, which cannot track
    # data/: its dataset is made again by the workflow (artifacts.py).
    data = (
        None
        if args.no_data
        else Path(args.data)
        if args.data
        else scale_dataset(results)
        if scale_remote(results) is None
        else None
    )
    files = push(results, data, remote=args.remote)
    print("\n".join(str(f) for f in files))
    ignores = sorted(
        {
            str(f.parent / ".gitignore")
            for f in files
            if f.parent != Path(".") and (f.parent / ".gitignore").exists()
        }
        - set(map(str, files))
    )
    print(
        "now commit them (DVC's .gitignore files too): git add "
        + " ".join(map(str, [*files, *ignores]))
        + " && git commit"
    )


def cmd_pull(args: argparse.Namespace) -> None:
    from scratchdet.artifacts import pull

    files = pull(Path(args.results), remote=args.remote)
    print(f"restored {len(files)} DVC-tracked folders of {args.results} (each file verified)")


def cmd_verify(args: argparse.Namespace) -> None:
    from scratchdet.artifacts import verify
    from scratchdet.errors import ScratchdetError

    files = sorted(p for p in Path(args.results).rglob("*.dvc") if p.is_file())
    if not files:
        raise ScratchdetError(f"{args.results}: no .dvc file to verify")
    print(f"{args.results}: {verify(files)} files match what their .dvc files record")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``artifacts`` and its subcommands."""
    s = subparsers.add_parser("artifacts", help="version datasets and trained rows with DVC")
    sub = s.add_subparsers(dest="artifacts_command", required=True)
    s = sub.add_parser("push", help="dvc add + push the data folder and every finished row")
    s.add_argument("--results", default="results/default", help="results folder of one scale")
    s.add_argument(
        "--data",
        help="data folder to track as data.dvc, default scale only "
        "(default: its synthetic dataset; other scales' datasets are not pushed)",
    )
    s.add_argument("--no-data", action="store_true", help="push the trained rows only")
    s.add_argument(
        "--remote",
        help="DVC remote (default: the scale's: the repository's default "
        "remote for the default scale, 'lab' for the others)",
    )
    s.set_defaults(func=cmd_push)
    s = sub.add_parser("pull", help="check the remotes answer, then dvc pull a results folder")
    s.add_argument(
        "--results",
        default="results/default",
        help="results folder of one scale (or of one table or row in it)",
    )
    s.add_argument("--remote", help="DVC remote (default: the one each .dvc file names)")
    s.set_defaults(func=cmd_pull)
    s = sub.add_parser(
        "verify",
        help="check every DVC-restored file of a results folder against "
        "the MD5 its .dvc file records (after a plain dvc pull)",
    )
    s.add_argument(
        "--results",
        default="results/default",
        help="results folder of one scale (or of one table or row in it)",
    )
    s.set_defaults(func=cmd_verify)
