"""Run configs: YAML files validated into typed structs (scratchdet.validation).

A config names everything a training run depends on, so that a result can always be traced back to
it. Unknown keys are errors (a typo must never silently fall back to a default), and every error
names the file and the dotted key.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from scratchdet.errors import ConfigError
from scratchdet.validation import Config, bounds, convert, interval_of
from scratchdet.yaml_io import dump_yaml, load_yaml

__all__ = [
    "AUGMENTATIONS",
    "BN_STATS",
    "PARAM_GROUPS",
    "PIPELINES",
    "PRECISIONS",
    "SGD_FORMS",
    "DataConfig",
    "DetectConfig",
    "LossConfig",
    "RunConfig",
    "TrainConfig",
    "config_from_dict",
    "dump_config",
    "load_config",
    "same_config",
    "set_dotted",
    "setting_ranges",
    "write_run_config",
]

Augmentation = Literal["ssd", "none"]
Pipeline = Literal["auto", "cpu", "device"]
Precision = Literal["auto", "fp32", "tf32", "bf16"]
BNStats = Literal["torch", "caffe"]
ParamGroups = Literal["uniform", "caffe"]
SGDForm = Literal["torch", "caffe"]

AUGMENTATIONS: tuple[str, ...] = typing.get_args(Augmentation)
"""Values of data.augment; scratchdet.input.augment.augment_config maps them to AugmentConfigs."""
PIPELINES: tuple[str, ...] = typing.get_args(Pipeline)
"""Values of data.pipeline."""
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
"""Values of train.precision (scratchdet.engine.precision)."""
BN_STATS: tuple[str, ...] = typing.get_args(BNStats)
"""Values of train.bn_stats (scratchdet.models.batchnorm)."""
PARAM_GROUPS: tuple[str, ...] = typing.get_args(ParamGroups)
"""Values of train.param_groups (scratchdet.engine.param_groups)."""
SGD_FORMS: tuple[str, ...] = typing.get_args(SGDForm)
"""Values of train.sgd (scratchdet.engine.param_groups.set_lr)."""

# Every int/float setting declares its allowed range (a test checks), and loading refuses a value
# outside it naming the file and the key, so that e.g. `detect.conf_threshold: 1.5` is not a run
# that silently detects nothing.
Count = Annotated[int, bounds("[0, inf)")]
Positive = Annotated[int, bounds("(0, inf)")]
PositiveFloat = Annotated[float, bounds("(0, inf)")]
NonNegative = Annotated[float, bounds("[0, inf)")]
Fraction = Annotated[float, bounds("(0, 1]")]
Probability = Annotated[float, bounds("[0, 1]")]


class DataConfig(Config):
    train: str = ""
    """Training split in the internal annotation format (JSON path)."""
    test: str = ""
    """Optional test split, used by `scratchdet detect` when no --data is given."""
    num_workers: Count = 2
    """DataLoader worker processes decoding (and, on the cpu pipeline, augmenting) images."""
    image_size: Positive = 300
    """Side of the square network input in pixels (the papers' 300)."""
    augment: Augmentation = "ssd"
    """'ssd': the Caffe SSD training augmentation the papers use (photometric distortion, expand,
    IoU-constrained crop, mirror, random interpolation); 'none': decode and resize only, for
    debugging and memorisation checks."""
    pipeline: Pipeline = "auto"
    """Where the augmentation and matching run. 'cpu': per image in DataLoader workers;
    'device': decode on the CPU, then augment and match the whole batch on the training device
    (fast on a GPU); 'auto': 'device' when training on CUDA, else 'cpu'."""


class TrainConfig(Config):
    batch_size: Positive = 32
    """Effective batch: images per optimizer step."""
    micro_batch: Count = 0
    """Images per forward pass; batch_size must be a multiple. 0 means equal to batch_size."""
    lr: PositiveFloat = 0.001
    """Base learning rate of SGD (after warmup, before the milestones)."""
    momentum: Annotated[float, bounds("[0, 1)")] = 0.9
    """SGD momentum."""
    weight_decay: NonNegative = 0.0005
    """L2 weight decay of SGD, on every parameter as in the Caffe solvers."""
    max_steps: Positive = 100
    """Optimizer steps of the run; the run ends with model_final.pt there."""
    milestones: list[int] = msgspec.field(default_factory=list)
    """Steps at which the learning rate is multiplied by gamma (multistep schedule)."""
    gamma: Fraction = 0.1
    """Factor of the learning rate at each milestone."""
    warmup_steps: Count = 0
    """Steps of linear warmup from lr * warmup_factor to lr (0: none)."""
    warmup_factor: Fraction = 1.0 / 3.0
    """Warmup starts at lr * warmup_factor and rises linearly to lr (mmdetection's 'linear')."""
    checkpoint_every: Positive = 50
    """Steps between snapshots (checkpoints/step_<step>.pt), the points a run resumes from."""
    keep_checkpoints: Positive = 3
    """Periodic snapshots kept (checkpoints/step_<step>.pt): a run resumes from the newest one it
    can read, so a snapshot damaged by a crash costs `checkpoint_every` steps, not the run."""
    device: str = "auto"
    """'auto' picks CUDA when available, else CPU."""
    amp: bool = True
    """Kept for old configs: with precision 'auto', false means fp32 (precision says it now)."""
    precision: Precision = "auto"
    """'fp32' (the releases: Caffe trains in float32; TF32 off), 'tf32' (float32 storage,
    TF32 matmuls and convolutions on CUDA), 'bf16' (bf16 autocast on any device), 'auto' (bf16
    autocast on CUDA, fp32 elsewhere, where bf16 is slower than fp32 on most CPUs)."""
    bn_group: Count = 0
    """Images per BatchNorm statistic (ghost BN): the release's images per GPU, so that one GPU
    normalises as the release's several did; 0 = the whole micro-batch. Divides micro_batch."""
    bn_stats: BNStats = "torch"
    """Running statistics: 'caffe' (Caffe's BatchNorm layer: a bias-corrected moving average
    with fraction 0.999, from the first group of each forward pass, as Caffe keeps its root
    GPU's), 'torch' (PyTorch's momentum, 0.1 unless the model sets another)."""
    param_groups: ParamGroups = "uniform"
    """'caffe': each parameter's lr_mult/decay_mult as the release's net definition declares
    them (scratchdet.engine.param_groups); 'uniform': one lr and one weight decay for all."""
    sgd: SGDForm = "torch"
    """'caffe': the learning rate enters the momentum (Caffe's SGDSolver: v = m v + lr g), so a
    lower rate slows the old momentum gradually; 'torch': torch.optim.SGD (w -= lr v)."""
    channels_last: bool = True
    """NHWC memory format on CUDA, where cuDNN convolutions are faster in it."""
    deterministic: bool = False
    """Deterministic algorithms: bit-identical resumes on CPU, slower on GPU."""
    max_loss: PositiveFloat = 1.0e4
    """A loss above this (or NaN/inf) ends the run as 'diverged', which is a result, not a crash."""
    max_grad_norm: NonNegative = 0.0
    """Gradient clipping threshold; 0 disables it (the papers do not clip)."""
    log_every: Positive = 20
    """Steps between reads of the step metrics by the host: the metrics log, progress, the
    divergence check and (with several processes) stop signals. The step itself never waits
    for the host; a non-finite step is skipped on the device, as GradScaler does."""
    compile: bool = False
    """torch.compile the whole training step (forward, loss, backward, the SGD update with its
    device-side skip; shapes are static, so it compiles once), with CUDA graphs on CUDA."""
    init_from: str = ""
    """model_final.pt of another run to start from (DSOD's COCO -> VOC fine-tuning); tensors
    whose shapes differ (the class scores: 81 vs 21) keep their fresh initialisation."""
    tensorboard: bool = False
    """Write TensorBoard event files to <run>/tensorboard (loss terms, lr, gradient norm,
    throughput, held-out mAP); needs the tensorboard package."""
    eval_every: Count = 0
    """Steps between scorings of the current weights on data.test (VOC07 mAP, beside the
    image-blind baseline, in <run>/eval.csv and TensorBoard); 0 = off."""


class LossConfig(Config):
    iou_threshold: Fraction = 0.5
    """A prior whose best IoU with a ground-truth box reaches this is a positive (SSD's 0.5)."""
    neg_pos_ratio: PositiveFloat = 3.0
    """Hard negatives kept per positive in the confidence loss (SSD's 3:1)."""
    loc_weight: NonNegative = 1.0
    """Weight of the localisation (smooth L1) loss against the confidence loss."""


class DetectConfig(Config):
    """Test-time settings; the post-processing defaults are the SSD library's
    (``scratchdet.ssd.postprocess.DETECTION_DEFAULTS``, the released test nets' Caffe
    ``DetectionOutputLayer``), restated here because this module does not import torch
    (tests/test_config.py holds them equal)."""

    conf_threshold: Probability = 0.01
    """Detections below this class score are dropped before NMS."""
    nms_threshold: Probability = 0.45
    """IoU above which per-class NMS suppresses the lower-scored box."""
    top_k: Positive = 400
    """Boxes per class kept for NMS, highest scores first."""
    keep_top_k: Positive = 200
    """Detections kept per image after NMS, over all classes."""
    batch_size: Positive = 8
    """Images per forward pass at detection."""
    precise_bn: Count = 0
    """Re-estimate BatchNorm running statistics from this many training batches before
    detection (PreciseBN, as in Detectron); 0 = off, as in the papers."""


class RunConfig(Config):
    seed: Count = 0
    """Seed of the initialisation and of the sample stream: a run is reproducible from it."""
    model: dict[str, Any] = msgspec.field(default_factory=lambda: {"name": "ssd300_vgg16"})
    """Passed to scratchdet.models.build_model, which validates its keys."""
    data: DataConfig = msgspec.field(default_factory=DataConfig)
    train: TrainConfig = msgspec.field(default_factory=TrainConfig)
    loss: LossConfig = msgspec.field(default_factory=LossConfig)
    detect: DetectConfig = msgspec.field(default_factory=DetectConfig)

    @property
    def micro_batch(self) -> int:
        return self.train.micro_batch or self.train.batch_size

    @property
    def accumulation(self) -> int:
        return self.train.batch_size // self.micro_batch

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def setting_ranges() -> dict[str, str]:
    """Dotted key -> allowed interval of every bounded setting (`bounds` fields)."""
    hints = typing.get_type_hints(RunConfig, include_extras=True)
    out = {name: spec for name, tp in hints.items() if (spec := interval_of(tp))}
    for section in ("data", "train", "loss", "detect"):
        sub = typing.get_type_hints(hints[section], include_extras=True)
        out |= {f"{section}.{name}": spec for name, tp in sub.items() if (spec := interval_of(tp))}
    return out


def _check_across_keys(cfg: RunConfig, path: str | None) -> None:
    """What no single key's type says: keys that constrain each other, and the step lists."""
    t = cfg.train
    if t.micro_batch and t.batch_size % t.micro_batch:
        raise ConfigError(
            path,
            "train.micro_batch",
            f"batch_size {t.batch_size} is not a multiple of micro_batch {t.micro_batch}",
        )
    if t.milestones != sorted(t.milestones) or any(m <= 0 for m in t.milestones):
        raise ConfigError(
            path, "train.milestones", f"must be increasing positive steps, got {t.milestones}"
        )
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise ConfigError(
            path, "train.device", f"must be auto, cpu, cuda or cuda:N, got {t.device!r}"
        )
    if not t.amp and t.precision != "auto":
        raise ConfigError(
            path, "train.amp", f"amp: false contradicts precision {t.precision!r}; drop train.amp"
        )
    if t.bn_group and cfg.micro_batch % t.bn_group:
        raise ConfigError(
            path,
            "train.bn_group",
            f"must divide the micro-batch ({cfg.micro_batch} images), got {t.bn_group}",
        )
    if "name" not in cfg.model and "family" not in cfg.model:
        raise ConfigError(path, "model", "needs a 'name' (a canonical model) or a 'family'")


def config_from_dict(raw: Any, path: str | Path | None = None) -> RunConfig:
    p = None if path is None else str(path)
    try:
        cfg = convert({} if raw is None else raw, RunConfig, path=p)
    except ConfigError as exc:
        augment = raw.get("data", {}).get("augment") if exc.key == "data.augment" else None
        if augment in PIPELINES:
            raise ConfigError(
                p,
                exc.key,
                f"{exc.problem} (the input path moved to data.pipeline: cpu, device or auto)",
            ) from None
        raise
    _check_across_keys(cfg, p)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config; `overrides` maps dotted keys to values (from the command line)."""
    path = Path(path)
    raw = load_yaml(path)  # duplicate keys refused, 1e-3 a number
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(
            path,
            "<top>",
            f"a run config is a mapping of sections, got a {type(raw).__name__}: {raw!r:.60}",
        )
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value, path)
    return config_from_dict(raw, path)


def set_dotted(
    raw: dict[str, Any], dotted: str, value: Any, path: str | Path | None = None
) -> None:
    """Set `raw[a][b][c] = value` for `dotted` 'a.b.c'; `path` names the file in errors."""
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(
                path,
                dotted,
                f"'{part}' is not a mapping in this config, so --set cannot set a key inside it",
            )
    node[leaf] = value


def same_config(recorded: Any, cfg: RunConfig) -> bool:
    """Whether a config recorded in a run folder (a checkpoint's 'config') is `cfg`.

    The recorded dict is read back through the schema first, so a key added since with its
    default (e.g. train.keep_checkpoints) does not make an old run look like another run's.
    """
    if not isinstance(recorded, dict):
        return False
    try:
        return config_from_dict(recorded).to_dict() == cfg.to_dict()
    except ConfigError:  # a key since removed or renamed: not comparable, so not the same
        return False


def dump_config(cfg: RunConfig) -> str:
    return dump_yaml(cfg.to_dict())


def write_run_config(config_json: str, out: str | Path) -> str:
    """Validate a run config given as JSON, write it as YAML to `out`; return the YAML text.

    The workflow's first job per row (`scratchdet workflow run-config`): the config arrives as
    Snakemake params and goes into the run folder named after its digest, validated before any
    training (model keys are checked by `scratchdet train`, which needs torch)."""
    from scratchdet.io import write_text

    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(out, "<json>", f"malformed JSON: {exc}") from None
    text = dump_config(config_from_dict(raw, out))
    write_text(out, text)
    return text
