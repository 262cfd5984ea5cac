"""Detection output as ``scratchdet detect`` computes it (``batch_detections``, then each image's
``keep_top_k`` best): per-class NMS, top-k limits, equality with a per-class torchvision
reference."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert, nms

from scratchdet.ssd.box_coder import decode
from scratchdet.ssd.postprocess import batch_detections

VAR = (0.1, 0.1, 0.2, 0.2)


def kept_detections(loc, conf, priors, variances, keep_top_k=200, **thresholds):
    """Per image, what ``engine.detect`` keeps of a batch: ``batch_detections``, then
    ``rank < keep_top_k`` (200, the released ``keep_top_k``); dicts of ``boxes``, ``scores``,
    ``labels`` by decreasing score."""
    d = batch_detections(loc, conf, priors=priors, variances=variances, **thresholds)
    keep = d.rank < keep_top_k
    return [
        {
            "boxes": d.boxes[keep & (d.image == i)],
            "scores": d.scores[keep & (d.image == i)],
            "labels": d.labels[keep & (d.image == i)],
        }
        for i in range(loc.shape[0])
    ]


def logits_for(probs: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is ``probs`` (rows sum to 1)."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


def priors_of(boxes_xyxy: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(boxes_xyxy), "xyxy", "cxcywh")


def reference(loc, conf, priors, conf_threshold, nms_threshold, top_k, keep_top_k):
    """Loop over images and classes with torchvision.ops.nms."""
    results = []
    for i in range(loc.shape[0]):
        boxes = decode(loc[i], priors, VAR)
        probs = conf[i].softmax(-1)
        all_boxes, all_scores, all_labels = [], [], []
        for c in range(1, conf.shape[-1]):
            s = probs[:, c]
            idx = torch.nonzero(s > conf_threshold).flatten()
            idx = idx[s[idx].argsort(descending=True)][:top_k]
            kept = idx[nms(boxes[idx], s[idx], nms_threshold)]
            all_boxes.append(boxes[kept])
            all_scores.append(s[kept])
            all_labels.append(torch.full((len(kept),), c))
        scores = torch.cat(all_scores)
        order = scores.argsort(descending=True)[:keep_top_k]
        results.append(
            {
                "boxes": torch.cat(all_boxes)[order],
                "scores": scores[order],
                "labels": torch.cat(all_labels)[order],
            }
        )
    return results


def test_nms_is_per_class():
    # Boxes 0 and 1 overlap (IoU 0.78); box 2 is elsewhere.
    priors = priors_of([[0.1, 0.1, 0.5, 0.5], [0.15, 0.1, 0.55, 0.5], [0.6, 0.6, 0.9, 0.9]])
    conf = logits_for(
        [
            [0.05, 0.90, 0.05],  # class 1, strong
            [0.05, 0.50, 0.45],  # class 1 (suppressed by box 0) and class 2 (kept)
            [0.10, 0.05, 0.85],  # class 2, elsewhere
        ]
    ).unsqueeze(0)
    (det,) = kept_detections(torch.zeros(1, 3, 4), conf, priors, VAR, conf_threshold=0.3)
    got = sorted(zip(det["labels"].tolist(), [round(s, 4) for s in det["scores"].tolist()]))
    assert got == [(1, 0.9), (2, 0.45), (2, 0.85)]
    assert det["scores"].tolist() == sorted(det["scores"].tolist(), reverse=True)
    box_for_045 = det["boxes"][det["scores"].sub(0.45).abs().argmin()]
    torch.testing.assert_close(box_for_045, torch.tensor([0.15, 0.1, 0.55, 0.5]))
    # Threshold just above the box-1 class-2 score drops it.
    (det,) = kept_detections(torch.zeros(1, 3, 4), conf, priors, VAR, conf_threshold=0.46)
    assert sorted(det["labels"].tolist()) == [1, 2]


def test_classes_stay_separate_even_for_boxes_far_outside_the_image():
    # Offsetting by class in batched_nms would map these two onto each other if coordinates
    # below -1 were not shifted first; they belong to different classes and must both survive.
    priors = priors_of([[-1.0, -1.0, 0.0, 0.0], [-3.0, -3.0, -2.0, -2.0], [0.5, 0.5, 1.0, 1.0]])
    conf = logits_for([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]).unsqueeze(0)
    (det,) = kept_detections(torch.zeros(1, 3, 4), conf, priors, VAR, conf_threshold=0.5)
    assert sorted(det["labels"].tolist()) == [1, 1, 2]


def test_top_k_and_keep_top_k_limits():
    gen = torch.Generator().manual_seed(0)
    n = 30  # disjoint boxes on a grid: NMS removes nothing
    xs = torch.arange(n, dtype=torch.float32) / n
    boxes = torch.stack([xs, xs, xs + 0.5 / n, xs + 0.5 / n], 1)
    priors = box_convert(boxes, "xyxy", "cxcywh")
    conf = torch.randn(2, n, 4, generator=gen)
    loc = torch.zeros(2, n, 4)
    dets = kept_detections(loc, conf, priors, VAR, conf_threshold=0.0, top_k=5, keep_top_k=1000)
    for det in dets:
        counts = torch.bincount(det["labels"], minlength=4)
        assert counts.tolist() == [0, 5, 5, 5]
    dets = kept_detections(loc, conf, priors, VAR, conf_threshold=0.0, top_k=5, keep_top_k=7)
    for i, det in enumerate(dets):
        assert len(det["scores"]) == 7
        # The 7 kept are the 7 best among the per-class top-5s.
        per_class_top = conf[i].softmax(-1)[:, 1:].topk(5, dim=0).values.flatten()
        torch.testing.assert_close(det["scores"], per_class_top.sort(descending=True).values[:7])


@pytest.mark.parametrize(("seed", "top_k"), [(0, 40), (1, 40), (2, 400)])
def test_equals_per_class_reference(seed, top_k):
    """top_k 40: rows with more candidates take a top-k and an NMS each; 400: no row needs a
    top-k and each image takes one NMS with its classes offset apart (the two CPU paths)."""
    gen = torch.Generator().manual_seed(seed)
    p, k = 300, 5
    centres = torch.rand(p, 2, generator=gen)
    sizes = 0.05 + 0.3 * torch.rand(p, 2, generator=gen)
    priors = torch.cat([centres, sizes], 1)
    loc = torch.randn(3, p, 4, generator=gen) * 0.5
    conf = torch.randn(3, p, k, generator=gen) * 2
    args = {"conf_threshold": 0.1, "nms_threshold": 0.45, "top_k": top_k, "keep_top_k": 60}
    got = kept_detections(loc, conf, priors, VAR, **args)
    ref = reference(loc, conf, priors, **args)
    assert len(got) == 3
    for g, r in zip(got, ref):
        assert len(g["scores"]) == len(r["scores"]) > 0
        torch.testing.assert_close(g["scores"], r["scores"])
        assert torch.equal(g["labels"], r["labels"])
        torch.testing.assert_close(g["boxes"], r["boxes"])
        assert g["labels"].min() >= 1 and g["labels"].max() <= k - 1


def test_nothing_above_threshold_gives_empty_results():
    priors = priors_of([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]])
    conf = logits_for([[0.98, 0.01, 0.01], [0.98, 0.01, 0.01]]).unsqueeze(0)
    (det,) = kept_detections(torch.zeros(1, 2, 4), conf, priors, VAR, conf_threshold=0.5)
    assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,)
    assert det["labels"].shape == (0,)


def test_scores_are_softmax_probabilities_and_clip_option():
    priors = priors_of([[-0.2, 0.1, 0.5, 1.3]])
    conf = torch.tensor([[[0.0, math.log(3.0)]]])
    (det,) = kept_detections(torch.zeros(1, 1, 4), conf, priors, VAR)
    assert det["scores"].item() == pytest.approx(0.75)
    torch.testing.assert_close(det["boxes"][0], torch.tensor([-0.2, 0.1, 0.5, 1.3]))
    (det,) = kept_detections(torch.zeros(1, 1, 4), conf, priors, VAR, clip=True)
    torch.testing.assert_close(det["boxes"][0], torch.tensor([0.0, 0.1, 0.5, 1.0]))


@pytest.mark.parametrize("n", [0, 50, 6000])
def test_one_call_nms_equals_torchvision_batched_nms(n):
    """nms_by_group's one-call path (what it runs on a GPU) keeps what torchvision's
    batched_nms keeps (its reference), at sizes where batched_nms loops over groups."""
    from torchvision.ops import batched_nms

    from scratchdet.ssd.postprocess import nms_by_group

    g = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=g) * 2 - 0.5  # some coordinates below 0, as decoded boxes
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 0.4 + 0.01], 1)
    boxes = boxes - boxes.min().clamp(max=0) if n else boxes
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 40, (n,), generator=g)
    want = batched_nms(boxes, scores, groups, 0.45)
    offsets = groups.to(boxes.dtype) * (boxes.max() + 1.0) if n else groups.float()
    got = (
        torch.ops.torchvision.nms(boxes + offsets[:, None], scores, 0.45)
        if n
        else nms_by_group(boxes, scores, groups, 0.45)
    )
    assert torch.equal(got, want)
    assert torch.equal(nms_by_group(boxes, scores, groups, 0.45), want)


def _random_head(seed: int, b: int = 3, p: int = 300, k: int = 5):
    gen = torch.Generator().manual_seed(seed)
    priors = torch.cat(
        [torch.rand(p, 2, generator=gen), 0.05 + 0.3 * torch.rand(p, 2, generator=gen)], 1
    )
    return (
        torch.randn(b, p, 4, generator=gen) * 0.5,
        torch.randn(b, p, k, generator=gen) * 2,
        priors,
    )


@pytest.mark.parametrize("top_k", [40, 400])
def test_vectorised_topk_nms_keeps_what_the_cpu_loop_keeps(top_k):
    """The path off the CPU (one sort, one offset NMS) against the CPU's loop, on the CPU."""
    from scratchdet.ssd.postprocess import topk_nms, topk_nms_vectorised

    loc, conf, priors = _random_head(3)
    boxes = decode(loc, priors, VAR)
    scores = conf.softmax(-1)[..., 1:]
    above = scores > 0.1
    want = topk_nms(boxes, scores, above, top_k, 0.45)
    got = topk_nms_vectorised(boxes, scores, above, top_k=top_k, iou_threshold=0.45)
    assert len(want) > 100
    assert sorted(got.tolist()) == sorted(want.tolist())


def test_batch_detections_compiles_as_one_graph():
    """fullgraph=True fails on any graph break; the compiled function gives the same result."""
    loc, conf, priors = _random_head(4)
    variances = torch.tensor(VAR)
    torch._dynamo.reset()
    compiled = torch.compile(batch_detections, fullgraph=True, backend="aot_eager")
    got = compiled(
        loc,
        conf,
        priors=priors,
        variances=variances,
        conf_threshold=0.1,
        nms_threshold=0.45,
        top_k=40,
    )
    want = batch_detections(
        loc,
        conf,
        priors=priors,
        variances=variances,
        conf_threshold=0.1,
        nms_threshold=0.45,
        top_k=40,
    )
    assert len(want.image) > 0
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_postprocess_benchmark_writes_the_component_schema(tmp_path):
    """``scratchdet benchmark postprocess`` (tiny): both kinds of scores, the ``cases`` schema;
    the reference is torchvision's own postprocess_detections and finds detections too."""
    from scratchdet.cli import main
    from scratchdet.io import read_json

    out = tmp_path / "postprocess.json"
    assert (
        main(
            [
                "benchmark",
                "postprocess",
                "--batch-size",
                "1",
                "--repeats",
                "2",
                "--warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cases = read_json(out)["cases"]
    assert [c["case"] for c in cases] == ["batch 1, untrained scores", "batch 1, peaked scores"]
    for case in cases:
        assert case["reference"]["name"] == "torchvision SSD.postprocess_detections"
        assert case["detections_per_image"] > 0
        assert 0 < case["ours"]["min_ms"] <= case["ours"]["median_ms"]
