"""``scratchdet report ...``: paper tables, figures, learning curves and evaluation-server files."""

from __future__ import annotations

import argparse

from scratchdet.cli.options import add_out
from scratchdet.cli.runner import parse_pairs

__all__ = ["register"]


def cmd_table(args: argparse.Namespace) -> None:
    from scratchdet.reports.tables import write_table_report

    found = write_table_report(
        args.params,
        scale_file=args.scale,
        scale_name=args.scale_name,
        runs=parse_pairs(args.run, "--run"),
        skips=parse_pairs(args.skip, "--skip"),
        out_md=args.out_md,
        out_csv=args.out_csv,
        out_json=args.out_json,
        baselines=parse_pairs(args.baseline, "--baseline"),
    )
    ran = sum(r.status != "not run" for r in found)
    print(f"{args.out_md}: {len(found)} rows, {ran} run, {len(found) - ran} not run")


def cmd_page(args: argparse.Namespace) -> None:
    from scratchdet.reports.page import write_page

    n = write_page(args.reports, args.out, args.title, args.note)
    print(f"{args.out}: the tables and {n} figures of {args.reports}")


def cmd_learning_curves(args: argparse.Namespace) -> None:
    from scratchdet.reports.learning_curve import learning_curve_figure, learning_curve_table

    curves = parse_pairs(args.curve, "--curve")
    precise = parse_pairs(args.precise_bn_curve, "--precise-bn-curve")
    learning_curve_figure(curves, args.out_png, args.title, args.note)
    rows = learning_curve_table(curves, precise, args.out_md, title=args.title, note=args.note)
    print(f"{args.out_md}: {len(rows)} runs")


def cmd_figure1(args: argparse.Namespace) -> None:
    from scratchdet.reports.figures import figure1

    window = figure1(
        parse_pairs(args.run, "--run"),
        args.out,
        window=args.window,
        title=args.title,
        note=args.note,
    )
    print(f"{args.out}: fluctuation window {window} steps")


def cmd_pr_curves(args: argparse.Namespace) -> None:
    from scratchdet.reports.figures import pr_figure

    aps = pr_figure(args.gt, args.dets, args.out, title=args.title, note=args.note)
    print(f"{args.out}: {len(aps)} classes")


def cmd_detections(args: argparse.Namespace) -> None:
    from scratchdet.reports.figures import detection_grid

    n = detection_grid(
        args.gt,
        args.dets,
        args.out,
        title=args.title,
        num_images=args.num_images,
        min_score=args.min_score,
        note=args.note,
    )
    print(f"{args.out}: {n} images")


def cmd_voc_submission(args: argparse.Namespace) -> None:
    from scratchdet.reports.submission import voc_submission

    n = voc_submission(args.data, args.dets, args.out, comp=args.comp)
    print(f"{args.out}: {n} boxes (upload at http://host.robots.ox.ac.uk:8080/)")


def cmd_coco_submission(args: argparse.Namespace) -> None:
    from scratchdet.reports.submission import coco_submission

    n = coco_submission(args.data, args.dets, args.out)
    print(f"{args.out}: {n} boxes (upload at https://codalab.lisn.upsaclay.fr/, COCO test-dev)")


def _note(s: argparse.ArgumentParser) -> None:
    s.add_argument("--note", default="", help="a line under the title (the scale's description)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` and its subcommands."""
    p = subparsers.add_parser("report", help="paper tables, figures and evaluation-server files")
    sub = p.add_subparsers(dest="report_command", required=True)

    s = sub.add_parser("table", help="a paper table as Markdown + CSV: reproduced, paper, diff")
    s.add_argument("--params", required=True, help="params/<table>.tsv")
    s.add_argument("--scale", required=True, help="config/scales/<scale>.yaml")
    s.add_argument("--scale-name", required=True, help="the scale's name, as in the config")
    s.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="ROW=RUN_DIR",
        help="a row's run folder (results/<scale>/<table>/<row>/<digest>)",
    )
    s.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="ROW=REASON",
        help="a row that did not run at this scale, and why",
    )
    s.add_argument("--out-md", required=True, help="Markdown report to write")
    s.add_argument("--out-csv", required=True, help="plain CSV (notes in <out-csv>.meta.json)")
    s.add_argument("--out-json", help="the values, run folders and provenance, as JSON")
    s.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="ROW=METRICS_JSON",
        help="the image-blind baseline's metrics for a row (scratchdet eval "
        "--baseline), shown in its own column",
    )
    s.set_defaults(func=cmd_table)

    s = sub.add_parser(
        "page",
        help="one HTML page with every table and figure of a reports "
        "folder, rendered (reports/<scale>/index.html)",
    )
    s.add_argument("--reports", required=True, help="the reports folder (reports/<scale>)")
    s.add_argument("--title", default="scratchdet reports", help="page title")
    s.add_argument("--note", default="", help="the scale's description, shown on top")
    add_out(s, "HTML file to write")
    s.set_defaults(func=cmd_page)

    s = sub.add_parser("learning-curves", help="learning curves of runs, as a PNG and a table")
    s.add_argument(
        "--curve",
        action="append",
        required=True,
        metavar="LABEL=CSV",
        help="a run's learning curve (scratchdet curve)",
    )
    s.add_argument(
        "--precise-bn-curve",
        action="append",
        default=[],
        metavar="LABEL=CSV",
        help="the same run's curve with PreciseBN, for the comparison column",
    )
    s.add_argument("--title", default="learning curves", help="figure and table title")
    _note(s)
    s.add_argument("--out-md", required=True, help="Markdown table to write")
    s.add_argument("--out-png", required=True, help="figure to write")
    s.set_defaults(func=cmd_learning_curves)

    s = sub.add_parser("figure1", help="ScratchDet Figure 1: loss, gradient norm, fluctuation")
    s.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="LABEL=RUN_DIR",
        help="a training run and its label in the legend",
    )
    s.add_argument("--window", type=int, help="fluctuation window in steps (default: 2%%)")
    s.add_argument("--title", default="ScratchDet Figure 1", help="figure title")
    _note(s)
    add_out(s, "PNG to write")
    s.set_defaults(func=cmd_figure1)

    for name, func, text in (
        ("pr-curves", cmd_pr_curves, "per-class precision-recall curves"),
        ("detections", cmd_detections, "a grid of test images with boxes"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--gt", required=True, help="ground truth of the split")
        s.add_argument("--dets", required=True, help="detections (COCO results JSON)")
        s.add_argument("--title", default="", help="figure title")
        _note(s)
        add_out(s, "PNG to write")
        if name == "detections":
            s.add_argument("--num-images", type=int, default=6, help="images shown (default 6)")
            s.add_argument(
                "--min-score",
                type=float,
                default=0.3,
                help="detections drawn from this score up (default 0.3)",
            )
        s.set_defaults(func=func)

    s = sub.add_parser("voc-submission", help="VOC 2012 test upload tar from detections")
    s.add_argument("--data", required=True, help="the test image list the detections are on")
    s.add_argument("--dets", required=True, help="detections (COCO results JSON)")
    s.add_argument(
        "--comp",
        choices=("comp3", "comp4"),
        default="comp4",
        help="comp3: VOC data only; comp4: outside data (ImageNet, COCO) too",
    )
    add_out(s, "the .tar.gz to upload")
    s.set_defaults(func=cmd_voc_submission)

    s = sub.add_parser("coco-submission", help="COCO test-dev upload zip from detections")
    s.add_argument("--data", required=True, help="the test image list the detections are on")
    s.add_argument("--dets", required=True, help="detections (COCO results JSON)")
    add_out(s, "detections_test-dev2017_<alg>_results.zip")
    s.set_defaults(func=cmd_coco_submission)
