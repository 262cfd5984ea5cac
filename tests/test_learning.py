"""Proof of learning: training from scratch produces detectors that look at the image.

Each test trains a small configuration from scratch through the product's own
`scratchdet.engine.train.train`, detects with `scratchdet.engine.detect.detect` and scores with
`scratchdet.evaluation.evaluate`, then compares with the image-blind baselines of the same split
(`evaluation/baselines.py`: per class the mean training box and the whole image in every image),
which no amount of training without looking at the pixels can beat.

The data is the product's synthetic generator with one to three mid-sized objects at random places
and sizes: image-blind boxes score about 0 on held-out images of it. Budgets were picked from
learning curves measured on this project's 2-core CI machine (`scratchdet curve`), VOC07 mAP:

Memorisation (`MEMORISE`: 4 images, batch 4, lr 0.05 after a 10-step warmup, no augmentation),
on the training images at steps 50 / 75 / 100 / 125 / 150:

- DSOD Table 3 row 1 options (DS/32-12-16-0.5, 3 dense blocks, plain head): 0.92 / 1.00 / 1.00 / -
/ 1.00
- ScratchDet Table 2 ds_1x3x3 (Root-ResNet-18, one 3x3/2 root conv): 0.62 / 1.00 / - / - / -
- VGG-16 with BN in backbone and head (ScratchDet Table 1), a quarter of the width:
  0.05 / 0.88 / 0.92 / 0.95 / 1.00

The image-blind score on those four training images is 0.11.

With the SSD augmentation (`GENERALISE_SET`: one class, one or two objects, 64 training and 16
held-out images; DSOD Table 3 row 1 options, batch 8, lr 0.05 after a 10-step warmup), held-out
mAP at steps 20 / 40 / ... / 200, measured with one thread (as the tests run):

- CPU input pipeline:    0.01 / 0.02 / 0.19 / 0.19 / 0.24 / 0.12 / 0.46 / 0.48 / 0.37 / 0.50
- device input pipeline: 0.01 / 0.04 / 0.15 / 0.23 / 0.36 / 0.38 / 0.41 / 0.65 / 0.66 / 0.66

and 0.0065 for the image-blind boxes. One snapshot can dip far below its neighbours (0.12 at step
120 on the CPU pipeline: a batch of 8 augmented images per step), so the test scores the last
three snapshots (steps 120, 140, 160) and asserts that their median is 0.15 above the baseline
(measured medians: 0.46 CPU, 0.41 device). With two threads the same runs scored 0.46 / 0.29 at
step 120: the curves depend on the arithmetic's order, the learning does not.

The tests compute with one thread (`one_thread`), whatever pytest's worker layout, so that CI
runs the curves measured here.
"""

from __future__ import annotations

import pytest

from scratchdet.config import config_from_dict
from scratchdet.data.annotations import save_annotations
from scratchdet.data.synth import make_synthetic_voc
from scratchdet.data.voc import read_voc
from scratchdet.engine.detect import detect
from scratchdet.engine.learning_curve import blind_scores, learning_curve
from scratchdet.engine.train import train
from scratchdet.evaluation import evaluate

# DSOD Table 3 row 1: DS/32-12-16-0.5, three dense blocks, plain prediction.
DSOD_ROW1 = {
    "name": "dsod300",
    "stem_channels": 32,
    "bottleneck": 12,
    "growth": 16,
    "theta": 0.5,
    "stem": False,
    "transition_wo_pool": False,
    "prediction": "plain",
}

MEMORISE = {
    "dsod": (DSOD_ROW1, 75),
    # ScratchDet Table 2 "ds_1x3x3": Root-ResNet-18 with one 3x3/2 root conv. Pre-activation as
    # released (Resnet18rootV2) it fits more slowly than the torchvision blocks did in 75 steps:
    # measured mAP 0.85 at 75 steps, 0.90 at 100, 1.0 at 150 (one thread, CPU).
    "resnet": ({"name": "root_resnet18_ssd300", "root_stride": 2, "root_convs": 1}, 150),
    # ScratchDet Table 1 "scratch_bn-both": VGG-16 with BN in backbone and head, quarter width.
    "vgg": (
        {
            "name": "ssd300_vgg16",
            "l2norm": "none",
            "bn_backbone": True,
            "bn_head": True,
            "width": 0.25,
        },
        125,
    ),
}
MEMORISE_SET = {
    "object_size": (0.15, 0.6),
    "objects": (1, 3),
    "classes": ("box", "disc", "triangle"),
}
GENERALISE_SET = {"object_size": (0.2, 0.6), "objects": (1, 2), "classes": ("box",)}
GENERALISE_STEPS = 160
GENERALISE_SNAPSHOTS = 3  # the last snapshots scored: steps 120, 140 and 160


@pytest.fixture(autouse=True)
def one_thread():
    """The budgets were measured with one thread; more threads change the order of the
    arithmetic, hence the curves (not whether the model learns)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _splits(root, n_train: int, n_test: int, seed: int, recipe: dict) -> dict[str, str]:
    voc = make_synthetic_voc(root, n_train, n_test, seed=seed, **recipe)
    out = {}
    for split in ("trainval", "test"):
        out[split] = str(root / f"{split}.json")
        save_annotations(read_voc(voc, split), out[split])
    return out


def _memorise(tmp_path, splits, model, *, steps):
    """Train on the four training images without augmentation (batch 4); their mAP and the
    image-blind baselines' on them."""
    cfg = config_from_dict(
        {
            "seed": 0,
            "model": model,
            "data": {
                "train": splits["trainval"],
                "num_workers": 0,
                "augment": "none",
                "pipeline": "cpu",
            },
            "train": {
                "batch_size": 4,
                "lr": 0.05,
                "max_steps": steps,
                "warmup_steps": 10,
                "checkpoint_every": steps,
                "log_every": 25,
                "device": "cpu",
                "amp": False,
                "channels_last": False,
            },
        }
    )
    run = tmp_path / "run"
    assert train(cfg, run)["status"] == "finished"
    dets = tmp_path / "dets.json"
    detect(
        run / "model_final.pt", splits["trainval"], dets, cfg.detect, device="cpu", num_workers=0
    )
    score = evaluate(splits["trainval"], dets, "voc07")["map"]
    blind = max(blind_scores(splits["trainval"], splits["trainval"]).values())
    return score, blind


@pytest.mark.slow
@pytest.mark.parametrize("family", MEMORISE)
def test_memorises_four_images_from_scratch(tmp_path, family):
    """Augmentation off: a small configuration of each family fits its four training images,
    whose objects sit at different places and sizes, where image-blind boxes stay far below."""
    model, steps = MEMORISE[family]
    splits = _splits(tmp_path / "data", 4, 1, seed=1, recipe=MEMORISE_SET)
    score, blind = _memorise(tmp_path, splits, model, steps=steps)
    assert blind < 0.3, blind
    assert score >= 0.9, (family, score)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["cpu", "device"])
def test_learns_to_look_with_augmentation(tmp_path, pipeline):
    """The SSD augmentation on, through either input pipeline: a short run finds objects on
    held-out images that image-blind boxes miss (the median of its last three snapshots)."""
    splits = _splits(tmp_path / "data", 64, 16, seed=2, recipe=GENERALISE_SET)
    interval = 20
    cfg = config_from_dict(
        {
            "seed": 0,
            "model": DSOD_ROW1,
            "data": {
                "train": splits["trainval"],
                "num_workers": 0,
                "augment": "ssd",
                "pipeline": pipeline,
            },
            "train": {
                "batch_size": 8,
                "lr": 0.05,
                "max_steps": GENERALISE_STEPS,
                "warmup_steps": 10,
                "checkpoint_every": interval,
                "keep_checkpoints": GENERALISE_SNAPSHOTS - 1,
                "log_every": 25,
                "device": "cpu",
                "amp": False,
                "channels_last": False,
            },
        }
    )
    run = tmp_path / "run"
    assert train(cfg, run)["status"] == "finished"
    rows = learning_curve(run, splits["test"], tmp_path / "curve.csv", device="cpu")
    steps = [GENERALISE_STEPS - interval * k for k in reversed(range(GENERALISE_SNAPSHOTS))]
    assert [r["step"] for r in rows] == steps
    scores = sorted(r["map"] for r in rows)
    blind = max(blind_scores(splits["trainval"], splits["test"]).values())
    assert blind < 0.05, blind
    assert scores[len(scores) // 2] >= blind + 0.15, (pipeline, rows, blind)
