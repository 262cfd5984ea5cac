"""``scratchdet models``: the canonical models, with their sizes."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def cmd_models(args: argparse.Namespace) -> None:
    import json

    from scratchdet.models import list_models

    rows = list_models(num_classes=args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'name':<22} {'params':>10} {'priors':>7}  sources")
    for r in rows:
        print(
            f"{r['name']:<22} {r['params'] / 1e6:>9.2f}M {r['priors']:>7}  "
            f"{'/'.join(str(s) for s in r['sources'])}"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models``."""
    s = subparsers.add_parser("models", help="list the canonical models")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument(
        "--num-classes",
        type=int,
        default=20,
        help="object classes, background excluded (default 20, VOC)",
    )
    s.set_defaults(func=cmd_models)
