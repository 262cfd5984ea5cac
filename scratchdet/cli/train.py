"""``scratchdet train``: train (or resume) one run, on the CPU, one GPU or several."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from scratchdet.cli.options import add_out
from scratchdet.cli.runner import add_count, load_run_config, parse_override
from scratchdet.errors import ConfigError

__all__ = ["register"]


def cmd_train(args: argparse.Namespace) -> None:
    from scratchdet.engine.gpus import assign_gpus

    if args.continue_from or args.max_steps:
        _continue(args)
    elif not args.config:
        raise ConfigError(None, "--config", "give the run config (or --continue-from RUN)")
    cfg = load_run_config(args.config, dict(parse_override(o) for o in args.set))  # before workers
    nproc = args.nproc or max(1, args.gpus)
    if "WORLD_SIZE" in os.environ:  # a torchrun worker: the launcher already chose the GPUs
        claim = None
    else:
        claim = assign_gpus(args.gpus)  # held (flock) until this process exits
        if nproc > 1:
            raise SystemExit(_launch_workers(args, nproc))
    from scratchdet.engine.train import train

    try:
        status = train(cfg, args.out, restart_stale=args.restart_stale)
    except ConfigError as exc:  # a key of the run config: name the file it came from
        if exc.path is None and exc.key.split(".")[0] in cfg.to_dict():
            raise ConfigError(args.config, exc.key, exc.problem) from None
        raise
    print(
        f"{args.out}: {status['status']} at step {status['step']}"
        + (f" ({status['reason']})" if status.get("reason") else "")
    )
    del claim


def _continue(args: argparse.Namespace) -> None:
    """--continue-from RUN --max-steps N: seed --out with RUN's newest snapshot and train there
    with RUN's config (or --config) raised to N steps, written as --out/run.yaml."""
    from scratchdet.config import dump_config, load_config
    from scratchdet.engine.continue_run import continued, prepare_continuation
    from scratchdet.io import write_text
    from scratchdet.run_folder import TrainFolder

    if not (args.continue_from and args.max_steps):
        raise ConfigError(None, "--continue-from", "give --continue-from RUN with --max-steps N")
    run_yaml = Path(args.out) / "run.yaml"
    args.set, overrides = [], dict(parse_override(o) for o in args.set)
    if continued(args.out, args.continue_from):  # the same command again: resume there
        args.config = str(run_yaml)
        return
    cfg = load_config(args.config or TrainFolder(Path(args.continue_from)).config, overrides)
    new = prepare_continuation(args.continue_from, args.out, args.max_steps, cfg)
    write_text(run_yaml, dump_config(new))
    args.config = str(run_yaml)


def _launch_workers(args: argparse.Namespace, nproc: int) -> int:
    """Run this same training as `nproc` torchrun workers, forwarding SIGTERM/SIGINT/USR1."""
    import signal
    import subprocess

    from scratchdet.engine.distributed import torchrun_command
    from scratchdet.engine.preemption import PREEMPT_SIGNAL, torchrun_signal_env
    from scratchdet.engine.run_lock import HELD_ENV, lock_run_folder

    argv = ["train", "--config", str(args.config), "--out", str(args.out)]
    if args.restart_stale:
        argv.append("--restart-stale")
    for override in args.set:
        argv += ["--set", override]
    lock = lock_run_folder(args.out)  # held for the workers, whose rank 0 would take it
    proc = subprocess.Popen(
        torchrun_command(nproc, argv),
        env=os.environ | torchrun_signal_env() | {HELD_ENV: str(lock.path.resolve())},
    )

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, PREEMPT_SIGNAL):
        signal.signal(sig, forward)
    with lock:
        code = proc.wait()
        if code:  # a refused run leaves no empty folder (as train() without workers)
            lock.remove_if_unused()
        return code


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    s = subparsers.add_parser("train", help="train (or resume) one run")
    s.add_argument("--config", help="YAML run config (required unless --continue-from)")
    add_out(s, "run folder (resumed if it holds a checkpoint)")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.05",
    )
    s.add_argument(
        "--restart-stale",
        action="store_true",
        help="discard a run in --out made with another config instead of refusing",
    )
    add_count(
        s,
        "--gpus",
        default=0,
        help="GPUs to claim on this machine (sets CUDA_VISIBLE_DEVICES unless already set)",
    )
    add_count(
        s,
        "--nproc",
        default=0,
        help="training processes (torch.distributed); default: one per GPU, or 1",
    )
    s.add_argument(
        "--continue-from",
        metavar="RUN",
        help="continue the run folder RUN to "
        "--max-steps in the new folder --out, from RUN's newest snapshot (recorded in "
        "--out/continued_from.json); its config, or --config, may change the schedule "
        "only",
    )
    s.add_argument(
        "--max-steps",
        type=int,
        default=0,
        metavar="N",
        help="with --continue-from: the new run's train.max_steps",
    )
    s.set_defaults(func=cmd_train)
