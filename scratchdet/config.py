"""Run configs: YAML files validated into typed dataclasses.

A config names everything a training run depends on, so that a result can always be traced back to
it. Unknown keys are errors (a typo must never silently fall back to a default), and every error
names the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .yaml_io import EXPONENT_FLOAT, dump_yaml, load_yaml

__all__ = ["AUGMENTATIONS", "BN_STATS", "PARAM_GROUPS", "PIPELINES", "PRECISIONS", "SGD_FORMS",
           "DataConfig", "DetectConfig", "LossConfig", "RunConfig", "TrainConfig", "bounded",
           "config_from_dict", "dump_config", "load_config", "same_config", "set_dotted",
           "setting_ranges"]

AUGMENTATIONS = ("ssd", "none")
"""Values of data.augment; scratchdet.input.recipe.augment_config maps them to recipes."""
PIPELINES = ("auto", "cpu", "device")
"""Values of data.pipeline."""
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
"""Values of train.precision (scratchdet.engine.precision)."""
BN_STATS = ("torch", "caffe")
"""Values of train.bn_stats (scratchdet.models.batchnorm)."""
PARAM_GROUPS = ("uniform", "caffe")
"""Values of train.param_groups (scratchdet.engine.param_groups)."""
SGD_FORMS = ("torch", "caffe")
"""Values of train.sgd (scratchdet.engine.param_groups.set_lr)."""


def bounded(default: float, interval: str) -> Any:
    """A numeric setting and its allowed range, e.g. `bounded(0.9, "[0, 1)")`: an interval with
    `inf` for no upper bound. Every int/float setting declares one (a test checks), and loading
    refuses a value outside it naming the file and the key, so that e.g.
    `detect.conf_threshold: 1.5` is not a run that silently detects nothing."""
    _parse_interval(interval)  # a malformed spec fails at import, not at the first bad value
    return field(default=default, metadata={"range": interval})


def _parse_interval(spec: str) -> tuple[float, float, bool, bool]:
    """'(0, 1]' -> (low, high, low_closed, high_closed)."""
    m = re.fullmatch(r"([\[(])\s*(-?[\d.]+|-inf)\s*,\s*(-?[\d.]+|inf)\s*([\])])", spec)
    if not m:
        raise ValueError(f"malformed range {spec!r}")
    return float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]"


def _range_problem(value: float, spec: str) -> str | None:
    """None when `value` lies in `spec`, else what the error says."""
    low, high, low_closed, high_closed = _parse_interval(spec)
    inside = (value >= low if low_closed else value > low) and (
        value <= high if high_closed else value < high)
    if inside:
        return None
    if math.isinf(high):
        return f"must be {'>=' if low_closed else '>'} {low:g}, got {value}"
    return f"must be in {spec}, got {value}"


@dataclass
class DataConfig:
    train: str = ""
    """Training split in the internal annotation format (JSON path)."""
    test: str = ""
    """Optional test split, used by `scratchdet detect` when no --data is given."""
    num_workers: int = bounded(2, "[0, inf)")
    """DataLoader worker processes decoding (and, on the cpu pipeline, augmenting) images."""
    image_size: int = bounded(300, "(0, inf)")
    """Side of the square network input in pixels (the papers' 300)."""
    augment: str = "ssd"
    """'ssd': the Caffe SSD training augmentation the papers use (photometric distortion, expand,
    IoU-constrained crop, mirror, random interpolation); 'none': decode and resize only, for
    debugging and memorisation checks."""
    pipeline: str = "auto"
    """Where the augmentation and matching run. 'cpu': per image in DataLoader workers;
    'device': decode on the CPU, then augment and match the whole batch on the training device
    (fast on a GPU); 'auto': 'device' when training on CUDA, else 'cpu'."""


@dataclass
class TrainConfig:
    batch_size: int = bounded(32, "(0, inf)")
    """Effective batch: images per optimizer step."""
    micro_batch: int = bounded(0, "[0, inf)")
    """Images per forward pass; batch_size must be a multiple. 0 means equal to batch_size."""
    lr: float = bounded(0.001, "(0, inf)")
    """Base learning rate of SGD (after warmup, before the milestones)."""
    momentum: float = bounded(0.9, "[0, 1)")
    """SGD momentum."""
    weight_decay: float = bounded(0.0005, "[0, inf)")
    """L2 weight decay of SGD, on every parameter as in the Caffe solvers."""
    max_steps: int = bounded(100, "(0, inf)")
    """Optimizer steps of the run; the run ends with model_final.pt there."""
    milestones: list[int] = field(default_factory=list)
    """Steps at which the learning rate is multiplied by gamma (multistep schedule)."""
    gamma: float = bounded(0.1, "(0, 1]")
    """Factor of the learning rate at each milestone."""
    warmup_steps: int = bounded(0, "[0, inf)")
    """Steps of linear warmup from lr * warmup_factor to lr (0: none)."""
    warmup_factor: float = bounded(1.0 / 3.0, "(0, 1]")
    """Warmup starts at lr * warmup_factor and rises linearly to lr (mmdetection's 'linear')."""
    checkpoint_every: int = bounded(50, "(0, inf)")
    """Steps between snapshots (checkpoints/step_<step>.pt), the points a run resumes from."""
    keep_checkpoints: int = bounded(3, "(0, inf)")
    """Periodic snapshots kept (checkpoints/step_<step>.pt): a run resumes from the newest one it
    can read, so a snapshot damaged by a crash costs `checkpoint_every` steps, not the run."""
    device: str = "auto"
    """'auto' picks CUDA when available, else CPU."""
    amp: bool = True
    """Kept for old configs: with precision 'auto', false means fp32 (precision says it now)."""
    precision: str = "auto"
    """'fp32' (the releases: Caffe trains in float32; TF32 off), 'tf32' (float32 storage,
    TF32 matmuls and convolutions on CUDA), 'bf16' (bf16 autocast on any device), 'auto' (bf16
    autocast on CUDA, fp32 elsewhere, where bf16 is slower than fp32 on most CPUs)."""
    bn_group: int = bounded(0, "[0, inf)")
    """Images per BatchNorm statistic (ghost BN): the release's images per GPU, so that one GPU
    normalises as the release's several did; 0 = the whole micro-batch. Divides micro_batch."""
    bn_stats: str = "torch"
    """Running statistics: 'caffe' (Caffe's BatchNorm layer: a bias-corrected moving average
    with fraction 0.999, from the first group of each forward pass, as Caffe keeps its root
    GPU's), 'torch' (PyTorch's momentum, 0.1 unless the model sets another)."""
    param_groups: str = "uniform"
    """'caffe': each parameter's lr_mult/decay_mult as the release's net definition declares
    them (scratchdet.engine.param_groups); 'uniform': one lr and one weight decay for all."""
    sgd: str = "torch"
    """'caffe': the learning rate enters the momentum (Caffe's SGDSolver: v = m v + lr g), so a
    lower rate slows the old momentum gradually; 'torch': torch.optim.SGD (w -= lr v)."""
    channels_last: bool = True
    """NHWC memory format on CUDA, where cuDNN convolutions are faster in it."""
    deterministic: bool = False
    """Deterministic algorithms: bit-identical resumes on CPU, slower on GPU."""
    max_loss: float = bounded(1.0e4, "(0, inf)")
    """A loss above this (or NaN/inf) ends the run as 'diverged', which is a result, not a crash."""
    max_grad_norm: float = bounded(0.0, "[0, inf)")
    """Gradient clipping threshold; 0 disables it (the papers do not clip)."""
    log_every: int = bounded(20, "(0, inf)")
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
    eval_every: int = bounded(0, "[0, inf)")
    """Steps between scorings of the current weights on data.test (VOC07 mAP, beside the
    image-blind baseline, in <run>/eval.csv and TensorBoard); 0 = off."""


@dataclass
class LossConfig:
    iou_threshold: float = bounded(0.5, "(0, 1]")
    """A prior whose best IoU with a ground-truth box reaches this is a positive (SSD's 0.5)."""
    neg_pos_ratio: float = bounded(3.0, "(0, inf)")
    """Hard negatives kept per positive in the confidence loss (SSD's 3:1)."""
    loc_weight: float = bounded(1.0, "[0, inf)")
    """Weight of the localisation (smooth L1) loss against the confidence loss."""


@dataclass
class DetectConfig:
    """Test-time settings; the post-processing defaults are the released SSD/DSOD test nets' (Caffe
    ``DetectionOutputLayer``: confidence 0.01, NMS 0.45, top 400 per class, 200 per image) and
    ``scratchdet.ssd.postprocess`` takes its defaults from here."""

    conf_threshold: float = bounded(0.01, "[0, 1]")
    """Detections below this class score are dropped before NMS."""
    nms_threshold: float = bounded(0.45, "[0, 1]")
    """IoU above which per-class NMS suppresses the lower-scored box."""
    top_k: int = bounded(400, "(0, inf)")
    """Boxes per class kept for NMS, highest scores first."""
    keep_top_k: int = bounded(200, "(0, inf)")
    """Detections kept per image after NMS, over all classes."""
    batch_size: int = bounded(8, "(0, inf)")
    """Images per forward pass at detection."""
    precise_bn: int = bounded(0, "[0, inf)")
    """Re-estimate BatchNorm running statistics from this many training batches before
    detection (PreciseBN, as in Detectron); 0 = off, as in the papers."""


@dataclass
class RunConfig:
    seed: int = bounded(0, "[0, inf)")
    """Seed of the initialisation and of the sample stream: a run is reproducible from it."""
    model: dict[str, Any] = field(default_factory=lambda: {"name": "ssd300_vgg16"})
    """Passed to scratchdet.models.build_model, which validates its keys."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)

    @property
    def micro_batch(self) -> int:
        return self.train.micro_batch or self.train.batch_size

    @property
    def accumulation(self) -> int:
        return self.train.batch_size // self.micro_batch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def setting_ranges() -> dict[str, str]:
    """Dotted key -> allowed interval of every bounded setting (`bounded` fields)."""
    out = {f.name: f.metadata["range"] for f in dataclasses.fields(RunConfig)
           if "range" in f.metadata}
    for section in ("data", "train", "loss", "detect"):
        cls = typing.get_type_hints(RunConfig)[section]
        out |= {f"{section}.{f.name}": f.metadata["range"] for f in dataclasses.fields(cls)
                if "range" in f.metadata}
    return out


def _check_type(value: Any, tp: Any, path: str | None, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, str) and EXPONENT_FLOAT.match(value.strip()):
            value = float(value)  # `1e-3` read by a YAML 1.1 reader (a --set value): a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, key, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(path, key, f"must be a finite number, got {value!r:.40}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {value!r}")
        return [_check_type(v, item_tp, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, key, f"expected a mapping, got {value!r}")
        _check_finite(value, path, key)  # free-form (the model's options): its numbers too
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, key)
    if origin in (typing.Union, types.UnionType):  # pragma: no cover - no such fields yet
        raise ConfigError(path, key, "union types are not supported in configs")
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _check_finite(value: Any, path: str | None, key: str) -> None:
    """NaN and infinity are never a setting: `lr: .nan` would train to NaN weights and exit 0."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, key, f"must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, path, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, path, f"{key}[{i}]")


def _build(cls: type, raw: Any, path: str | None, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, prefix or "<top>", f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(path, where, f"unknown key; allowed keys here: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in raw:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _check_type(raw[name], hints[name], path, key)
    return cls(**kwargs)


def _check_ranges(cfg: RunConfig, path: str | None) -> None:
    for key, spec in setting_ranges().items():
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        problem = _range_problem(node, spec)
        if problem:
            raise ConfigError(path, key, problem)
    t = cfg.train
    if t.micro_batch and t.batch_size % t.micro_batch:
        raise ConfigError(path, "train.micro_batch",
                          f"batch_size {t.batch_size} is not a multiple of micro_batch {t.micro_batch}")
    if t.milestones != sorted(t.milestones) or any(m <= 0 for m in t.milestones):
        raise ConfigError(path, "train.milestones", f"must be increasing positive steps, got {t.milestones}")
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise ConfigError(path, "train.device", f"must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    _check_recipe_keys(cfg, path)
    if cfg.data.augment not in AUGMENTATIONS:
        hint = (" (the input path moved to data.pipeline: cpu, device or auto)"
                if cfg.data.augment in PIPELINES else "")
        raise ConfigError(path, "data.augment", f"must be one of {', '.join(AUGMENTATIONS)}, got "
                                                f"{cfg.data.augment!r}{hint}")
    if cfg.data.pipeline not in PIPELINES:
        raise ConfigError(path, "data.pipeline", f"must be one of {', '.join(PIPELINES)}, got "
                                                 f"{cfg.data.pipeline!r}")
    if "name" not in cfg.model and "family" not in cfg.model:
        raise ConfigError(path, "model", "needs a 'name' (a canonical model) or a 'family'")


def _check_recipe_keys(cfg: RunConfig, path: str | None) -> None:
    """The training-recipe keys of issue 19: precision, BatchNorm statistics, parameter groups."""
    t = cfg.train
    for key, allowed in (("precision", PRECISIONS), ("bn_stats", BN_STATS),
                         ("param_groups", PARAM_GROUPS), ("sgd", SGD_FORMS)):
        if getattr(t, key) not in allowed:
            raise ConfigError(path, f"train.{key}", f"must be one of {', '.join(allowed)}, got "
                                                    f"{getattr(t, key)!r}")
    if not t.amp and t.precision != "auto":
        raise ConfigError(path, "train.amp", f"amp: false contradicts precision "
                                             f"{t.precision!r}; drop train.amp")
    if t.bn_group < 0:
        raise ConfigError(path, "train.bn_group", f"must be >= 0, got {t.bn_group}")
    if t.bn_group and cfg.micro_batch % t.bn_group:
        raise ConfigError(path, "train.bn_group", f"must divide the micro-batch "
                                                  f"({cfg.micro_batch} images), got {t.bn_group}")


def config_from_dict(raw: Any, path: str | Path | None = None) -> RunConfig:
    p = None if path is None else str(path)
    cfg = _build(RunConfig, raw, p, "")
    _check_ranges(cfg, p)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config; `overrides` maps dotted keys to values (from the command line)."""
    path = Path(path)
    raw = load_yaml(path)  # duplicate keys refused, 1e-3 a number
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(path, "<top>", f"a run config is a mapping of sections, got a "
                                         f"{type(raw).__name__}: {raw!r:.60}")
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value, path)
    return config_from_dict(raw, path)


def set_dotted(raw: dict[str, Any], dotted: str, value: Any, path: str | Path | None = None
               ) -> None:
    """Set `raw[a][b][c] = value` for `dotted` 'a.b.c'; `path` names the file in errors."""
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(path, dotted, f"'{part}' is not a mapping in this config, so "
                                            f"--set cannot set a key inside it")
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
    from .io import write_text

    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(out, "<json>", f"malformed JSON: {exc}") from None
    text = dump_config(config_from_dict(raw, out))
    write_text(out, text)
    return text
