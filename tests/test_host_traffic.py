"""The hot paths ask nothing of the host: counted on the meta device (data-free tensors), so the
check runs on a CPU-only machine. Bounds (issue: fast by construction):

- one training micro-batch through either input pipeline, forward, loss and backward: exactly
  one host-to-device copy (the batch's buffer), nothing read back, no data-dependent op;
- the optimizer step (gradient norm, fused SGD that skips a non-finite step): no host read;
- one detection batch: one copy in, one copy out, and one data-dependent op (``topk_nms``: the
  confidence filter, top-k and NMS), whatever the batch size and however many candidates pass.
"""

from __future__ import annotations

import pytest
import torch

from scratchdet.benchmark.host_traffic import HostTrafficCounter
from scratchdet.config import config_from_dict
from scratchdet.data.annotations import load_annotations
from scratchdet.data.dataset import DetectionDataset
from scratchdet.engine.step import TrainStep
from scratchdet.input import build_train_input
from scratchdet.models import build_model
from scratchdet.ssd.postprocess import batch_detections

META = torch.device("meta")
SMALL_DSOD = {
    "name": "dsod300",
    "stem_channels": 16,
    "bottleneck": 16,
    "growth": 8,
    "theta": 0.5,
    "stem": False,
    "transition_wo_pool": False,
    "prediction": "plain",
}


def _cfg(train_json, pipeline: str, batch: int = 4):
    return config_from_dict(
        {
            "seed": 0,
            "model": SMALL_DSOD,
            "data": {"train": str(train_json), "num_workers": 0, "pipeline": pipeline},
            "train": {"batch_size": batch, "max_steps": 1},
        }
    )


def _model(device: torch.device):
    torch.manual_seed(0)
    with device:
        return build_model(SMALL_DSOD, num_classes=5, load_pretrained=False).train()


def test_counter_sees_copies_reads_and_data_dependent_ops():
    x = torch.zeros(4, device=META)
    with HostTrafficCounter(META) as seen:
        x = x + torch.ones(4).to(META)
        x = x + torch.tensor([1.0, 2.0, 3.0, 4.0], device=META)
        (x > 0).nonzero()
        x[x > 0]
        x.sum().item()
        x.cpu()
    assert seen.counts() == {"to_device": 2, "to_host": 1, "data_dependent": 3}


@pytest.mark.parametrize("pipeline", ["cpu", "device"])
def test_a_training_micro_batch_is_one_copy_and_nothing_back(synth_splits, pipeline):
    cfg = _cfg(synth_splits["trainval"], pipeline)
    model = _model(META)
    dataset = DetectionDataset(load_annotations(synth_splits["trainval"]))
    batches = build_train_input(
        cfg,
        dataset,
        device=META,
        priors=model.priors,
        variances=model.prior_config.variances,
        start_step=0,
    )
    host = next(iter(batches.loader))  # the workers' side: CPU only
    step = TrainStep(model, cfg, device=META, accumulation=1)
    with HostTrafficCounter(META) as seen:
        buffer = host.buffer.to(META, non_blocking=True)
        batch = batches.to_train_batch(buffer, host.steps, host.slots)
        step.begin(0.01)
        step.micro_step(batch)
    assert batch.images.shape == (4, 3, 300, 300)
    assert host.slots <= batches.layout.max_boxes  # the batch's bucket, known on the host
    assert seen.counts() == {"to_device": 1, "to_host": 0, "data_dependent": 0}, seen


def test_the_optimizer_step_reads_nothing_back(synth_splits):
    """On the CPU, where torch has fused SGD: norm, skip decision and update stay tensors."""
    cfg = _cfg(synth_splits["trainval"], "cpu", batch=2)
    model = _model(torch.device("cpu"))
    step = TrainStep(model, cfg, device=torch.device("cpu"), accumulation=1)
    assert step.optimizer.defaults["fused"]
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    with HostTrafficCounter(META) as seen:  # data-dependent ops are seen on any device
        metrics = step.finish()
    assert seen.data_dependent == [] and metrics.shape == (5,)


@pytest.mark.parametrize("batch", [1, 8])  # 8 x 5 classes x 400: 16,000 NMS candidates
def test_a_detection_batch_is_a_constant_few_host_trips(batch):
    model = _model(META).eval()
    variances = torch.tensor(model.prior_config.variances, device=META)  # once per run
    images = torch.zeros(batch, 3, 300, 300)
    with HostTrafficCounter(META) as seen, torch.no_grad():
        loc, conf = model(images.to(META, non_blocking=True))
        d = batch_detections(loc, conf, priors=model.priors, variances=variances)
        torch.cat([d.image[:, None].float(), d.scores[:, None], d.boxes], 1).cpu()
    assert seen.counts() == {"to_device": 1, "to_host": 1, "data_dependent": 1}, seen
    assert seen.data_dependent == ["scratchdet.topk_nms.default"]
