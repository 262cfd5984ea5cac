"""`scratchdet report ...`: the workflow's report, figure, run-config and server-file commands.

`register(subparsers)` adds the `report` family to the scratchdet command line; until it is wired
in, `python -m scratchdet.reports.cli <command> ...` takes the same arguments.
"""

from __future__ import annotations

import argparse
import sys


def _pairs(values: list[str], option: str) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise ConfigError(None, option, f"expected NAME=VALUE, got {v!r}")
        out[key] = value
    return out


def cmd_run_config(args: argparse.Namespace) -> None:
    from .runconfig import write_run_config

    write_run_config(args.json, args.out)
    print(args.out)


def cmd_table(args: argparse.Namespace) -> None:
    from .tables import write_table_report

    found = write_table_report(args.params, args.scale, args.scale_name, _pairs(args.run, "--run"),
                               _pairs(args.skip, "--skip"), args.out_md, args.out_csv,
                               args.out_json, _pairs(args.baseline, "--baseline"))
    ran = sum(r.status != "not run" for r in found)
    print(f"{args.out_md}: {len(found)} rows, {ran} run, {len(found) - ran} not run")


def cmd_learning_curves(args: argparse.Namespace) -> None:
    from .learning_curve import learning_curve_figure, learning_curve_table

    curves = _pairs(args.curve, "--curve")
    precise = _pairs(args.precise_bn_curve, "--precise-bn-curve")
    learning_curve_figure(curves, args.out_png, args.title, args.note)
    rows = learning_curve_table(curves, precise, args.out_md, args.title, args.note)
    print(f"{args.out_md}: {len(rows)} runs")


def cmd_figure1(args: argparse.Namespace) -> None:
    from .figures import figure1

    window = figure1(_pairs(args.run, "--run"), args.out, args.window, args.title, args.note)
    print(f"{args.out}: fluctuation window {window} steps")


def cmd_pr_curves(args: argparse.Namespace) -> None:
    from .figures import pr_figure

    aps = pr_figure(args.gt, args.dets, args.out, args.title, args.note)
    print(f"{args.out}: {len(aps)} classes")


def cmd_detections(args: argparse.Namespace) -> None:
    from .figures import detection_grid

    n = detection_grid(args.gt, args.dets, args.out, args.title, args.num_images, args.min_score,
                       note=args.note)
    print(f"{args.out}: {n} images")


def cmd_voc_submission(args: argparse.Namespace) -> None:
    from .submission import voc_submission

    n = voc_submission(args.data, args.dets, args.out, args.comp)
    print(f"{args.out}: {n} boxes (upload at http://host.robots.ox.ac.uk:8080/)")


def cmd_coco_submission(args: argparse.Namespace) -> None:
    from .submission import coco_submission

    n = coco_submission(args.data, args.dets, args.out)
    print(f"{args.out}: {n} boxes (upload at https://codalab.lisn.upsaclay.fr/, COCO test-dev)")


def cmd_test_list(args: argparse.Namespace) -> None:
    from ..errors import ConfigError
    from .submission import coco_test_list, voc_test_list

    needed = ("voc_dir",) if args.source == "voc" else ("image_info", "images")
    for name in needed:
        if not getattr(args, name):
            raise ConfigError(None, f"--{name.replace('_', '-')}",
                              f"required by test-list {args.source}")
    if args.source == "voc":
        n = voc_test_list(args.voc_dir, args.split, args.out)
    else:
        n = coco_test_list(args.image_info, args.images, args.out)
    print(f"{args.out}: {n} images")


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run-config", help="validate a run config given as JSON, write it as YAML")
    s.add_argument("--json", required=True, help="the whole run config as a JSON object")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_run_config)

    s = sub.add_parser("table", help="a paper table as Markdown + CSV: reproduced, paper, diff")
    s.add_argument("--params", required=True, help="params/<table>.tsv")
    s.add_argument("--scale", required=True, help="config/scales/<scale>.yaml")
    s.add_argument("--scale-name", required=True)
    s.add_argument("--run", action="append", default=[], metavar="ROW=RUN_DIR",
                   help="a row's run folder (results/<scale>/<table>/<row>/<digest>)")
    s.add_argument("--skip", action="append", default=[], metavar="ROW=REASON",
                   help="a row that did not run at this scale, and why")
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-csv", required=True, help="plain CSV (notes in <out-csv>.meta.json)")
    s.add_argument("--out-json", help="the values, run folders and provenance, as JSON")
    s.add_argument("--baseline", action="append", default=[], metavar="ROW=METRICS_JSON",
                   help="the image-blind baseline's metrics for a row (scratchdet eval "
                        "--baseline), shown in its own column")
    s.set_defaults(func=cmd_table)

    s = sub.add_parser("learning-curves", help="learning curves of runs, as a PNG and a table")
    s.add_argument("--curve", action="append", required=True, metavar="LABEL=CSV",
                   help="a run's learning curve (scratchdet curve)")
    s.add_argument("--precise-bn-curve", action="append", default=[], metavar="LABEL=CSV",
                   help="the same run's curve with PreciseBN, for the comparison column")
    s.add_argument("--title", default="learning curves")
    s.add_argument("--note", default="", help="a line under the title (the scale's description)")
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-png", required=True)
    s.set_defaults(func=cmd_learning_curves)

    s = sub.add_parser("figure1", help="ScratchDet Figure 1: loss, gradient norm, fluctuation")
    s.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR")
    s.add_argument("--window", type=int, help="fluctuation window in steps (default: 2%%)")
    s.add_argument("--title", default="ScratchDet Figure 1")
    s.add_argument("--note", default="", help="a line under the title (the scale's description)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_figure1)

    for name, func, text in (("pr-curves", cmd_pr_curves, "per-class precision-recall curves"),
                             ("detections", cmd_detections, "a grid of test images with boxes")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--gt", required=True)
        s.add_argument("--dets", required=True)
        s.add_argument("--title", default="")
        s.add_argument("--note", default="",
                       help="a line under the title (the scale's description)")
        s.add_argument("--out", required=True)
        if name == "detections":
            s.add_argument("--num-images", type=int, default=6)
            s.add_argument("--min-score", type=float, default=0.3)
        s.set_defaults(func=func)

    s = sub.add_parser("voc-submission", help="VOC 2012 test upload tar from detections")
    s.add_argument("--data", required=True, help="the test image list the detections are on")
    s.add_argument("--dets", required=True)
    s.add_argument("--comp", choices=("comp3", "comp4"), default="comp4",
                   help="comp3: VOC data only; comp4: outside data (ImageNet, COCO) too")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_voc_submission)

    s = sub.add_parser("coco-submission", help="COCO test-dev upload zip from detections")
    s.add_argument("--data", required=True)
    s.add_argument("--dets", required=True)
    s.add_argument("--out", required=True, help="detections_test-dev2017_<alg>_results.zip")
    s.set_defaults(func=cmd_coco_submission)

    s = sub.add_parser("test-list", help="an unlabelled test split as an image list")
    s.add_argument("source", choices=("voc", "coco"))
    s.add_argument("--voc-dir", help="voc: VOCdevkit/VOC2012-style folder")
    s.add_argument("--split", default="test", help="voc: split list name")
    s.add_argument("--image-info", help="coco: image_info_*.json")
    s.add_argument("--images", help="coco: the image folder")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_test_list)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `report` with its commands to the scratchdet command line."""
    p = subparsers.add_parser("report", help="reports, figures and workflow helpers")
    add_commands(p.add_subparsers(dest="report_command", required=True))


def main(argv: list[str] | None = None) -> int:
    from ..cli import run_parsed

    parser = argparse.ArgumentParser(prog="scratchdet report", description=__doc__.splitlines()[0])
    add_commands(parser.add_subparsers(dest="report_command", required=True))
    return run_parsed(parser.parse_args(argv), verbose=True)


if __name__ == "__main__":
    sys.exit(main())
