"""Run a trained model over a dataset split and write COCO-format detections.

Batched end to end: workers decode and resize to uint8 (pinned, copied without blocking), the
device subtracts the mean, runs the model (bf16 autocast, channels-last, cuDNN autotuning on
CUDA) and ``ssd.postprocess.batch_detections`` (one NMS for the whole batch), and the batch's
detections come back to the host in one copy; boxes are scaled to each image on the host with
numpy. Images done/total go to stderr (``scratchdet.progress``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from scratchdet.config import DetectConfig, RunConfig, config_from_dict
from scratchdet.data.annotations import label_maps, load_annotations
from scratchdet.data.dataset import DetectionDataset
from scratchdet.engine.checkpoint import load_checkpoint
from scratchdet.engine.device import memory_format_for, resolve_device
from scratchdet.engine.precise_bn import precise_bn
from scratchdet.engine.run_lock import lock_output_file
from scratchdet.errors import DataError
from scratchdet.input import SSDTestTransform, build_train_input
from scratchdet.io import write_json
from scratchdet.models import build_model
from scratchdet.models.input import CAFFE_MEAN_RGB
from scratchdet.progress import Progress
from scratchdet.run_folder import RunStatus
from scratchdet.ssd.postprocess import batch_detections

log = logging.getLogger(__name__)

__all__ = ["detect", "detection_rows", "load_trained_model"]


class _TestSamples(torch.utils.data.Dataset):
    def __init__(self, dataset: DetectionDataset, image_size: int):
        self.dataset, self.transform = dataset, SSDTestTransform(size=image_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, _ = self.dataset[index]
        return self.transform.resize(image), index


def _collate(batch):
    images, indices = zip(*batch)
    return torch.stack(images), torch.tensor(indices)


def load_trained_model(
    checkpoint: str | Path, device: torch.device
) -> tuple[torch.nn.Module, dict]:
    state = load_checkpoint(checkpoint, map_location=device)
    for key in ("model", "model_config", "class_names"):
        if key not in state:
            raise DataError(
                checkpoint,
                f"not a trained-model file: missing '{key}' (pass "
                "model_final.pt or a checkpoints/step_*.pt of a run)",
            )
    model = build_model(
        state["model_config"], num_classes=len(state["class_names"]), load_pretrained=False
    )  # the checkpoint holds the trained weights
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def _precise_bn_batches(
    state: dict,
    model: torch.nn.Module,
    device: torch.device,
    memory_format: torch.memory_format,
    num_batches: int,
) -> Iterator[torch.Tensor]:
    """Training images for PreciseBN: the run's own input pipeline, past its last step."""
    if "config" not in state:
        raise DataError("<checkpoint>", "PreciseBN needs the run config in the checkpoint")
    cfg: RunConfig = config_from_dict(state["config"])
    micro_steps = -(-num_batches // cfg.accumulation)
    dataset = DetectionDataset(load_annotations(cfg.data.train))
    batches = build_train_input(
        cfg,
        dataset,
        device=device,
        priors=model.priors,
        variances=model.prior_config.variances,
        start_step=cfg.train.max_steps,
        max_steps=cfg.train.max_steps + micro_steps,
        memory_format=memory_format,
    )
    return (batch.images for batch in batches)


@torch.inference_mode()
def _forward(model: torch.nn.Module, images: torch.Tensor, autocast) -> tuple[torch.Tensor, ...]:
    with autocast:
        return model(images)


def detect(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: DetectConfig | None = None,
    *,
    device: str = "auto",
    num_workers: int = 2,
) -> int:
    """Write detections of `checkpoint` on split `data` to `out`; returns how many were written.

    `checkpoint`: `model_final.pt` or any `checkpoints/step_*.pt` snapshot of a training run.
    A diverged run writes an empty list: its evaluation then reads NaN, as the papers' tables do.
    With ``cfg.precise_bn`` > 0 the BatchNorm statistics are re-estimated from that many training
    batches first (see ``precise_bn.py``). One process writes `out` at a time (a second one is
    refused, see `run_lock.py`).
    """
    with lock_output_file(out):
        return _detect(checkpoint, data, out, cfg, device, num_workers)


def _detect(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: DetectConfig | None,
    device: str,
    num_workers: int,
) -> int:
    cfg = cfg or DetectConfig()
    dev = resolve_device(device, "--device")
    model, state = load_trained_model(checkpoint, dev)
    ann = load_annotations(data)
    if not ann["images"]:
        raise DataError(
            data,
            "holds no images, so there is nothing to detect on; give --data a split with images",
        )
    names = [c["name"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    if names != state["class_names"]:
        raise DataError(
            data,
            f"categories {names} differ from those the model was trained on {state['class_names']}",
        )
    if state.get("status") == RunStatus.DIVERGED:  # the final model records how the run ended
        write_json(out, [])
        return 0
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = memory_format_for(dev, channels_last=True)
    model = model.to(memory_format=memory_format)
    if cfg.precise_bn:
        model.train()
        precise_bn(
            model,
            _precise_bn_batches(state, model, dev, memory_format, cfg.precise_bn),
            cfg.precise_bn,
        )
        model.eval()
    _, label_to_cat = label_maps(ann)
    dataset = DetectionDataset(ann)
    loader = DataLoader(
        _TestSamples(dataset, state.get("image_size", 300)),
        batch_size=cfg.batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    mean = torch.tensor(CAFFE_MEAN_RGB, device=dev)[None, :, None, None]
    priors, variances = model.priors, torch.tensor(model.prior_config.variances, device=dev)
    found: list[np.ndarray] = []
    with Progress("detect", len(dataset), unit="image") as progress:  # after each batch's copy
        for pixels, indices in loader:
            images = (pixels.to(dev, non_blocking=True).float() - mean).contiguous(
                memory_format=memory_format
            )
            loc, conf = _forward(model, images, autocast)
            rows = detection_rows(loc, conf, priors=priors, variances=variances, cfg=cfg)
            rows = rows.cpu().numpy()
            rows = rows[rows[:, 7] < cfg.keep_top_k]
            rows[:, 0] = indices.numpy()[rows[:, 0].astype(np.int64)]  # batch slot -> dataset index
            found.append(rows)
            progress.update(len(indices))
    results = _to_coco(
        np.concatenate(found) if found else np.zeros((0, 8), np.float32), dataset, label_to_cat
    )
    write_json(out, results, indent=None)
    return len(results)


def detection_rows(
    loc: torch.Tensor,
    conf: torch.Tensor,
    *,
    priors: torch.Tensor,
    variances: torch.Tensor,
    cfg: DetectConfig,
) -> torch.Tensor:
    """A batch's detections as one float tensor on its device, rows (batch slot, label, score,
    x0, y0, x1, y1 normalised, rank in its image): what `detect` copies to the host in one go
    and then keeps while ``rank < cfg.keep_top_k`` (the benchmarks time the same)."""
    d = batch_detections(
        loc.float(),
        conf.float(),
        priors=priors,
        variances=variances,
        conf_threshold=cfg.conf_threshold,
        nms_threshold=cfg.nms_threshold,
        top_k=cfg.top_k,
    )
    columns = [d.image[:, None], d.labels[:, None], d.scores[:, None], d.boxes, d.rank[:, None]]
    return torch.cat([c.float() for c in columns], dim=1)


def _to_coco(
    rows: np.ndarray, dataset: DetectionDataset, label_to_cat: dict[int, int]
) -> list[dict[str, Any]]:
    """Rows (dataset index, label, score, x0, y0, x1, y1 normalised, rank) -> COCO results."""
    index = rows[:, 0].astype(np.int64)
    h, w = dataset.sizes[index, 0], dataset.sizes[index, 1]
    x0, y0 = rows[:, 3] * w, rows[:, 4] * h
    xywh = np.stack([x0, y0, rows[:, 5] * w - x0, rows[:, 6] * h - y0], axis=1).round(2)
    scores = rows[:, 2].astype(np.float64).round(5)
    cats = np.array([label_to_cat[int(lab)] for lab in range(1, len(label_to_cat) + 1)])
    category = cats[rows[:, 1].astype(np.int64) - 1]
    ids = dataset.image_ids[index]
    return [
        {"image_id": int(i), "category_id": int(c), "bbox": b, "score": float(s)}
        for i, c, b, s in zip(ids.tolist(), category.tolist(), xywh.tolist(), scores.tolist())
    ]
