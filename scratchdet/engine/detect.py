"""Run a trained model over a dataset split and write COCO-format detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import DetectConfig
from ..data.annotations import label_maps, load_annotations
from ..data.dataset import DetectionDataset
from ..data.transforms import SSDTestTransform
from ..errors import DataError
from ..io import write_json
from ..models import build_model
from ..ssd.postprocess import postprocess
from .checkpoint import load_checkpoint
from .device import resolve_device
from .run_lock import lock_output_file


class _TestSamples(torch.utils.data.Dataset):
    def __init__(self, dataset: DetectionDataset, image_size: int):
        self.dataset, self.transform = dataset, SSDTestTransform(size=image_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        h, w = image.shape[-2:]
        image, _, _ = self.transform(image, target["boxes"], target["labels"])
        return image, target["image_id"], (h, w)


def _collate(batch):
    images, ids, sizes = zip(*batch)
    return torch.stack(images), list(ids), list(sizes)


def load_trained_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    state = load_checkpoint(checkpoint, map_location=device)
    for key in ("model", "model_config", "class_names"):
        if key not in state:
            raise DataError(checkpoint, f"not a trained-model file: missing '{key}' (pass "
                                        "model_final.pt or a checkpoints/step_*.pt of a run)")
    model = build_model(state["model_config"], num_classes=len(state["class_names"]),
                        load_pretrained=False)  # the checkpoint holds the trained weights
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def detect(checkpoint: str | Path, data: str | Path, out: str | Path,
           cfg: DetectConfig | None = None, device: str = "auto", num_workers: int = 2) -> int:
    """Write detections of `checkpoint` on split `data` to `out`; returns how many were written.

    `checkpoint`: `model_final.pt` or any `checkpoints/step_*.pt` snapshot of a training run.
    A diverged run writes an empty list: its evaluation then reads NaN, as the papers' tables do.
    One process writes `out` at a time (a second one is refused, see `run_lock.py`).
    """
    with lock_output_file(out):
        return _detect(checkpoint, data, out, cfg, device, num_workers)


@torch.inference_mode()
def _detect(checkpoint: str | Path, data: str | Path, out: str | Path, cfg: DetectConfig | None,
            device: str, num_workers: int) -> int:
    cfg = cfg or DetectConfig()
    dev = resolve_device(device, "--device")
    model, state = load_trained_model(checkpoint, dev)
    ann = load_annotations(data)
    names = [c["name"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    if names != state["class_names"]:
        raise DataError(data, f"categories {names} differ from those the model was trained on "
                              f"{state['class_names']}")
    if state.get("status") == "diverged":
        write_json(out, [])
        return 0
    _, label_to_cat = label_maps(ann)
    loader = DataLoader(_TestSamples(DetectionDataset(data), state.get("image_size", 300)),
                        batch_size=cfg.batch_size, num_workers=num_workers, collate_fn=_collate)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None
    results: list[dict[str, Any]] = []
    priors = model.priors
    variances = model.prior_config.variances
    for images, ids, sizes in loader:
        images = images.to(dev, non_blocking=True)
        if autocast is not None:
            with autocast:
                loc, conf = model(images)
        else:
            loc, conf = model(images)
        dets = postprocess(loc.float(), conf.float(), priors, variances,
                           conf_threshold=cfg.conf_threshold, nms_threshold=cfg.nms_threshold,
                           top_k=cfg.top_k, keep_top_k=cfg.keep_top_k)
        for det, image_id, (h, w) in zip(dets, ids, sizes):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=det["boxes"].device)
            boxes = (det["boxes"] * scale).cpu()
            boxes[:, 2:] -= boxes[:, :2]
            for box, score, label in zip(boxes.tolist(), det["scores"].tolist(),
                                         det["labels"].tolist()):
                results.append({"image_id": image_id, "category_id": label_to_cat[label],
                                "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
    write_json(out, results, indent=None)
    return len(results)
