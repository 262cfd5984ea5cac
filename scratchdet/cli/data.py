"""``scratchdet data ...``: make, convert, split, fetch and check datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scratchdet.cli.options import add_also_out, add_out
from scratchdet.cli.runner import add_count
from scratchdet.errors import ConfigError

__all__ = ["register"]


def _check_synth(args: argparse.Namespace, shapes: list[str]) -> None:
    """The generator's own limits, named by the options a user typed."""
    if args.trainval < 2:
        raise ConfigError(None, "--trainval", f"at least 2 training images, got {args.trainval}")
    if args.test < 1:
        raise ConfigError(None, "--test", f"at least 1 test image, got {args.test}")
    if args.objects and not 1 <= args.objects[0] <= args.objects[1]:
        raise ConfigError(
            None,
            "--objects",
            f"MIN MAX with 1 <= MIN <= MAX, got {args.objects[0]} {args.objects[1]}",
        )
    if args.object_size and not 0 < args.object_size[0] <= args.object_size[1] <= 0.9:
        raise ConfigError(
            None,
            "--object-size",
            f"MIN MAX with 0 < MIN <= MAX <= 0.9, got {args.object_size[0]} {args.object_size[1]}",
        )
    classes = args.classes or []
    unknown = [c for c in classes if c not in shapes]
    if unknown or len(set(classes)) != len(classes):
        raise ConfigError(
            None, "--classes", f"distinct names of {' '.join(shapes)}; got {' '.join(classes)}"
        )


def cmd_synth(args: argparse.Namespace) -> None:
    from scratchdet.data.synth import SHAPES, SYNTH_CLASSES, make_synthetic_voc

    _check_synth(args, list(SHAPES))
    extra: dict[str, Any] = {}
    if args.objects:
        extra["objects"] = tuple(args.objects)
    if args.object_size:
        extra["object_size"] = tuple(args.object_size)
    root = make_synthetic_voc(
        args.out,
        n_trainval=args.trainval,
        n_test=args.test,
        seed=args.seed,
        classes=args.classes or SYNTH_CLASSES,
        **extra,
    )
    print(root)


def cmd_split(args: argparse.Namespace) -> None:
    from scratchdet.data.annotations import load_annotations, save_annotations
    from scratchdet.data.split import split_dataset

    ds = load_annotations(args.data, resolve_image_dir=False)
    train, test = split_dataset(ds, args.test, seed=args.seed, source=args.data)
    save_annotations(train, args.train_out)
    save_annotations(test, args.test_out)
    print(
        f"{args.train_out}: {len(train['images'])} images; "
        f"{args.test_out}: {len(test['images'])} images"
    )


def cmd_voc(args: argparse.Namespace) -> None:
    from scratchdet.data.annotations import class_names, save_annotations
    from scratchdet.data.check import verify_images
    from scratchdet.data.voc import (
        annotation_classes,
        class_conflict,
        parse_classes,
        read_voc_files,
        read_voc_many,
    )

    if args.classes and args.like:
        raise ConfigError(None, "--like", "give --classes or --like, not both")
    classes = (
        parse_classes(args.classes)
        if args.classes
        else annotation_classes(args.like)
        if args.like
        else None
    )
    if args.annotations:  # flat layout: a folder of XMLs next to a folder of images
        if args.voc_dir or args.split or not args.images:
            raise ConfigError(
                None,
                "--annotations",
                "give --annotations with --images, and without --voc-dir/--split",
            )
        xmls = sorted(Path(args.annotations).glob("*.xml"))
        if not xmls:
            raise ConfigError(None, "--annotations", f"no *.xml file in {args.annotations}")
        ds = read_voc_files(xmls, args.images, classes)
        conflict = None if classes else class_conflict(args.out, class_names(ds))
        if conflict:  # the names found here would number the classes unlike the sibling's
            sibling, theirs = conflict
            raise ConfigError(
                None,
                "--like",
                (
                    f"the classes found in {args.annotations} ({', '.join(class_names(ds))}) "
                    f"differ "
                    f"from those of {sibling} ({', '.join(theirs)}), so their ids would not match: "
                    f"number them alike with --like {sibling} (or --classes)"
                ),
            )
    else:
        if not args.voc_dir or len(args.voc_dir) != len(args.split or []):
            raise ConfigError(
                None,
                "--split",
                "give --voc-dir with one --split each (or --annotations with --images)",
            )
        ds = read_voc_many([(Path(d), s) for d, s in zip(args.voc_dir, args.split)], classes)
    if not ds["annotations"]:  # nothing to train or score on: refused, not "0 boxes" and exit 0
        from scratchdet.errors import DataError

        source = args.annotations or ", ".join(
            f"{d}/ImageSets/Main/{s}.txt" for d, s in zip(args.voc_dir, args.split)
        )
        raise DataError(
            source,
            f"no object in any of its {len(ds['images'])} images' XML files: "
            "nothing to train or evaluate on (an unlabelled split is "
            "`scratchdet data test-list`)",
        )
    for dropped in verify_images(ds, drop=args.drop_broken):  # no training batch meets one
        print(f"dropped {dropped}", file=sys.stderr)
    save_annotations(ds, args.out)
    print(f"{args.out}: {len(ds['images'])} images, {len(ds['annotations'])} boxes")


def cmd_coco(args: argparse.Namespace) -> None:
    from scratchdet.data.annotations import save_annotations
    from scratchdet.data.coco import read_coco

    ds = read_coco(args.ann, args.images)
    if not ds["annotations"]:  # as data voc: nothing to train or score on
        from scratchdet.errors import DataError

        raise DataError(
            args.ann,
            f"no object in any of its {len(ds['images'])} images: nothing "
            "to train or evaluate on (an unlabelled split is `scratchdet "
            "data test-list`)",
        )
    save_annotations(ds, args.out)
    print(f"{args.out}: {len(ds['images'])} images, {len(ds['annotations'])} boxes")


def cmd_test_list(args: argparse.Namespace) -> None:
    from scratchdet.reports.submission import coco_test_list, voc_test_list

    needed = ("voc_dir",) if args.source == "voc" else ("image_info", "images")
    for name in needed:
        if not getattr(args, name):
            raise ConfigError(
                None, f"--{name.replace('_', '-')}", f"required by test-list {args.source}"
            )
    if args.source == "voc":
        n = voc_test_list(args.voc_dir, args.split, args.out)
    else:
        n = coco_test_list(args.image_info, args.images, args.out)
    print(f"{args.out}: {n} images")


def cmd_download(args: argparse.Namespace) -> None:
    from scratchdet.data.download import fetch

    print(
        fetch(
            args.url,
            args.out,
            md5=args.md5,
            sha256=args.sha256,
            retries=args.retries,
            manual=args.manual,
        )
    )


def cmd_extract(args: argparse.Namespace) -> None:
    from scratchdet.data.download import extract

    n = extract(args.archive, args.into, args.marker)
    print(f"{args.archive}: {n} members -> {args.into}")


def cmd_check(args: argparse.Namespace) -> None:
    from scratchdet.data.check import check_dataset, format_report

    report = check_dataset(args.path, split=args.split, decode=not args.no_decode)
    print(format_report(report))
    if args.out:
        from scratchdet.io import write_json

        write_json(args.out, report)
    if not report["ok"]:
        raise SystemExit(2)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands."""
    data = subparsers.add_parser("data", help="make, convert, split, fetch and check datasets")
    sub = data.add_subparsers(dest="data_command", required=True)

    s = sub.add_parser("synth", help="write a deterministic synthetic VOCdevkit tree")
    add_out(s, "folder to create the VOCdevkit tree in")
    s.add_argument("--trainval", type=int, default=160, help="training images (default 160)")
    s.add_argument("--test", type=int, default=80, help="test images (default 80)")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.add_argument(
        "--objects",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="objects per image (default 1 5)",
    )
    s.add_argument(
        "--object-size",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="object sides as fractions of the image's short side (default 12 px to 0.7)",
    )
    s.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="classes to draw, of box disc triangle cross ring (default all)",
    )
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("split", help="split one annotation file into train and test, by seed")
    s.add_argument("--data", required=True, help="annotation file to split")
    add_count(s, "--test", required=True, help="images that go to the test part")
    s.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    s.add_argument("--train-out", required=True, help="annotation file of the training part")
    s.add_argument("--test-out", required=True, help="annotation file of the test part")
    s.set_defaults(func=cmd_split)

    s = sub.add_parser("voc", help="convert VOC splits to the internal annotation format")
    s.add_argument(
        "--voc-dir", action="append", help="VOCdevkit/VOC2007-style folder; repeat to merge years"
    )
    s.add_argument("--split", action="append", help="split list name, per --voc-dir")
    s.add_argument("--annotations", help="flat layout: a folder of VOC XMLs (with --images)")
    s.add_argument("--images", help="flat layout: the folder of the images the XMLs name")
    s.add_argument(
        "--classes",
        help="the classes in label order: a file (one name a line, or an "
        "annotation JSON) or a comma-separated list (default: the tree's classes.txt "
        "or the 20 VOC classes; flat layout: the sorted names found, refused when an "
        "annotation file beside --out has other classes)",
    )
    s.add_argument(
        "--like",
        metavar="TRAIN_JSON",
        help="number the classes as this annotation "
        "file does (e.g. the training set's), refusing any class it lacks",
    )
    s.add_argument(
        "--drop-broken",
        action="store_true",
        help="leave out images that do not decode (named on stderr) instead of failing",
    )
    add_out(s, "annotation file (JSON) to write")
    s.set_defaults(func=cmd_voc)

    s = sub.add_parser("coco", help="convert a COCO instances file to the internal format")
    s.add_argument("--ann", required=True, help="COCO instances_*.json")
    s.add_argument("--images", required=True, help="the folder of the images it names")
    add_out(s, "annotation file (JSON) to write")
    s.set_defaults(func=cmd_coco)

    s = sub.add_parser(
        "test-list",
        help="an unlabelled test split (VOC 2012 test, COCO "
        "test-dev) as an image list in the internal format",
    )
    s.add_argument("source", choices=("voc", "coco"), help="the split's dataset")
    s.add_argument("--voc-dir", help="voc: VOCdevkit/VOC2012-style folder")
    s.add_argument("--split", default="test", help="voc: split list name (default test)")
    s.add_argument("--image-info", help="coco: image_info_*.json")
    s.add_argument("--images", help="coco: the image folder")
    add_out(s, "image list (JSON) to write")
    s.set_defaults(func=cmd_test_list)

    s = sub.add_parser("download", help="fetch an archive (resumable, checksum-verified)")
    s.add_argument("--url", required=True, help="address to fetch")
    add_out(s, "file to write once it is whole and verified")
    s.add_argument("--md5", help="expected MD5 of the whole file")
    s.add_argument("--sha256", help="expected SHA-256 of the whole file")
    add_count(s, "--retries", default=5, help="attempts after a broken connection (default 5)")
    s.add_argument("--manual", help="never fetch: the file needs a login; this text says how")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("extract", help="unpack a tar/zip, refusing members escaping --into")
    s.add_argument("--archive", required=True, help="the .tar(.gz) or .zip")
    s.add_argument("--into", required=True, help="folder to unpack into")
    s.add_argument("--marker", help="file written when extraction has finished")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser(
        "check", help="report every fault in a dataset (JSON or VOC folder); exit 2 on a fatal one"
    )
    s.add_argument("path", help="annotation file (JSON) or VOC folder")
    s.add_argument(
        "--split",
        default="trainval",
        help="split list to read when PATH is a VOC folder (default trainval)",
    )
    s.add_argument(
        "--no-decode",
        action="store_true",
        help="read image headers only (fast, but misses truncated images)",
    )
    add_also_out(s, "also write the report as JSON")
    s.set_defaults(func=cmd_check)
