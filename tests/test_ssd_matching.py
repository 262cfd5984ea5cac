"""Box coding and batched matching, checked against a per-image port of Caffe's MatchBBox."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert, box_iou

from scratchdet.input.pipeline import HostLayout
from scratchdet.ssd.box_coder import decode, encode, encode_parts
from scratchdet.ssd.matching import box_iou_batched, box_slots, match, match_indices
from scratchdet.ssd.priors import make_priors, ssd300_voc

VAR = (0.1, 0.1, 0.2, 0.2)


def random_boxes(n: int, gen: torch.Generator, min_size: float = 0.02) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 0.8
    wh = min_size + torch.rand(n, 2, generator=gen) * (1 - xy - min_size).clamp_min(0.0)
    return torch.cat([xy, xy + wh], dim=1)


def cxcywh(boxes: list[list[float]]) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float32)


# --- box coder ---------------------------------------------------------------------------


def test_encode_decode_round_trip_batched():
    gen = torch.Generator().manual_seed(0)
    priors = make_priors(ssd300_voc())[:500]
    gt = random_boxes(2 * 3 * 500, gen).reshape(2, 3, 500, 4)
    loc = encode(gt, priors, VAR)
    assert loc.shape == (2, 3, 500, 4)
    torch.testing.assert_close(decode(loc, priors, VAR), gt, rtol=1e-5, atol=1e-6)


def test_encode_parts_recombine_to_encode():
    gen = torch.Generator().manual_seed(5)
    priors = make_priors(ssd300_voc())[:300]
    gt = random_boxes(300, gen)
    gt_part, offset, scale = encode_parts(gt, priors, VAR)
    torch.testing.assert_close((gt_part - offset) / scale, encode(gt, priors, VAR))


def test_encode_known_values():
    prior = cxcywh([[0.5, 0.5, 0.2, 0.4]])
    same = box_convert(prior, "cxcywh", "xyxy")
    torch.testing.assert_close(encode(same, prior, VAR), torch.zeros(1, 4))
    # Shift right by half a width, double the height.
    gt = box_convert(cxcywh([[0.6, 0.5, 0.2, 0.8]]), "cxcywh", "xyxy")
    expected = torch.tensor([[0.1 / 0.2 / 0.1, 0.0, 0.0, torch.log(torch.tensor(2.0)) / 0.2]])
    torch.testing.assert_close(encode(gt, prior, VAR), expected)
    # Two-entry variances (ssd.pytorch style) mean the same thing.
    torch.testing.assert_close(encode(gt, prior, (0.1, 0.2)), expected)


def test_decode_stays_finite_and_encode_of_degenerate_box_is_finite():
    prior = cxcywh([[0.5, 0.5, 0.1, 0.1]])
    out = decode(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), prior, VAR)
    assert torch.isfinite(out).all()
    degenerate = torch.tensor([[0.3, 0.3, 0.3, 0.5]])  # zero width
    assert torch.isfinite(encode(degenerate, prior, VAR)).all()


# --- matching: Caffe's MatchBBox ---------------------------------------------------------

# The released facts, as data. BBOX_UTIL = weiliu89/caffe, branch ssd, src/caffe/util/bbox_util.cpp.
CAFFE_MATCHING = {
    # DSOD DSOD300_pascal.py:228-229, ScratchDet caffe/ssd_pascal.py:231-232
    "match_type": "PER_PREDICTION",
    "overlap_threshold": 0.5,
    # both :218 / :221: no prior is ignored for crossing the image border
    "ignore_cross_boundary_bbox": False,
    # BBOX_UTIL:625: only overlaps > 1e-6 are stored; a pair without one never matches, not even
    # in the bipartite step (BBOX_UTIL:651-653, :665-667: no stored pair left -> stop)
    "min_overlap": 1e-6,
    # BBOX_UTIL:642-662: priors scanned in index order (std::map), pooled GTs in index order
    # (gt_pool keeps its order under erase, :673), best replaced only on a strictly larger
    # overlap: ties go to the lower prior, then the lower GT
    "bipartite_tie_order": ("prior index", "gt index"),
    # BBOX_UTIL:692-699: overlap >= threshold and strictly larger than the best so far, GTs in
    # index order: ties go to the lower GT; every GT is a candidate, matched ones included
    "per_prediction_rule": (">=", "strict >"),
    # BBOX_UTIL:274-290 (JaccardOverlap, normalized): intersect / (size1 + size2 - intersect),
    # 0 unless the intersection has positive width and height; sizes are width * height
}


def caffe_iou(gt: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``[N, P]`` float32 JaccardOverlap (BBOX_UTIL:274-290, IntersectBBox :65-80, BBoxSize
    :82-100), computed in float32 like the C++."""
    g = gt[:, None, :].astype(np.float32)
    pr = priors[None, :, :].astype(np.float32)
    iw = np.minimum(g[..., 2], pr[..., 2]) - np.maximum(g[..., 0], pr[..., 0])
    ih = np.minimum(g[..., 3], pr[..., 3]) - np.maximum(g[..., 1], pr[..., 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, np.float32(0)).astype(np.float32)
    size_p = (pr[..., 2] - pr[..., 0]) * (pr[..., 3] - pr[..., 1])
    size_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / ((size_p + size_g) - inter)
    return np.where(inter > 0, out, np.float32(0)).astype(np.float32)


def caffe_match_bbox(gt: np.ndarray, priors: np.ndarray, threshold: float) -> np.ndarray:
    """One image, a port of MatchBBox (BBOX_UTIL:584-716, PER_PREDICTION, label -1, no ignored
    priors): the GT index of every prior, -1 for none. The scans of the C++ loops are written
    as "the first pair in scan order with the largest overlap", which is what a scan that keeps
    its best on a strictly larger value returns."""
    n, p = gt.shape[0], priors.shape[0]
    match = np.full(p, -1)
    if n == 0:
        return match
    ov = caffe_iou(gt, priors).T  # [P, N]: overlaps[i][j]
    stored = ov > CAFFE_MATCHING["min_overlap"]
    pool = list(range(n))
    while pool:  # bipartite
        free = match == -1
        best, pair = -1.0, None
        for i in np.nonzero(free & stored[:, pool].any(1))[0]:  # priors in index order
            for j in pool:  # the pool in its order
                if stored[i, j] and ov[i, j] > best:
                    best, pair = ov[i, j], (i, j)
        if pair is None:
            break
        match[pair[0]] = pair[1]
        pool.remove(pair[1])
    for i in np.nonzero((match == -1) & stored.any(1))[0]:  # per prediction
        best, best_j = -1.0, -1
        for j in range(n):
            if stored[i, j] and ov[i, j] >= threshold and ov[i, j] > best:
                best, best_j = ov[i, j], j
        match[i] = best_j
    return match


def crowded_image(gen: torch.Generator, n: int) -> torch.Tensor:
    """``n`` boxes crowded into one corner, with exact duplicates, boxes equal to priors
    (IoU ties between GTs and between priors), a box overlapping no prior and a degenerate one."""
    centre = 0.15 + 0.2 * torch.rand(n, 2, generator=gen)
    half = 0.02 + 0.1 * torch.rand(n, 2, generator=gen)
    boxes = torch.cat([centre - half, centre + half], 1)
    if n >= 8:
        boxes[3] = boxes[1]  # duplicate GT: the same overlaps
        boxes[5] = boxes[1]
        boxes[2] = torch.tensor([0.0, 0.0, 0.2, 0.2])  # a box on the grid: equal overlaps
        boxes[6] = torch.tensor([2.0, 2.0, 2.5, 2.5])  # overlaps no prior at all
        boxes[7] = torch.tensor([0.3, 0.3, 0.3, 0.4])  # zero width
    return boxes


def oracle_targets(boxes, labels, priors, threshold=0.5):
    """labels [P] and the matched GT index [P] of one image by the port."""
    priors_xyxy = box_convert(priors, "cxcywh", "xyxy").numpy()
    m = caffe_match_bbox(boxes.numpy(), priors_xyxy, threshold)
    lab = np.where(m >= 0, labels.numpy()[np.maximum(m, 0)] if len(labels) else 0, 0)
    return torch.from_numpy(m), torch.from_numpy(lab)


def host_targets(boxes, labels, slots):
    """(boxes ``[B, slots, 4]``, labels, mask) as training hands them to ``match``: written into
    a micro-batch's table by ``HostLayout.fill_targets`` and read back by ``HostLayout.targets``
    (input/pipeline.py)."""
    layout = HostLayout(batch=len(boxes), height=1, width=1, max_boxes=slots, decisions=False)
    table = torch.zeros(len(boxes), layout.columns)
    layout.fill_targets(table, boxes, labels)
    return layout.targets(table)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_match_equals_the_port_of_caffe_on_crowded_images(seed):
    gen = torch.Generator().manual_seed(seed)
    priors = make_priors(ssd300_voc())
    counts = [40, 0, 1, 12, 25, 8]
    boxes = [crowded_image(gen, n) for n in counts]
    labels = [torch.randint(1, 21, (n,), generator=gen) for n in counts]
    gt_b, gt_l, mask = host_targets(boxes, labels, box_slots(max(counts)))
    loc_t, lab_t = match(gt_b, gt_l, mask, priors=priors, variances=VAR)
    gt_idx, overlap = match_indices(gt_b, mask, priors)
    conflicts = 0
    for i, n in enumerate(counts):
        want_idx, want_lab = oracle_targets(boxes[i], labels[i], priors)
        assert torch.equal(lab_t[i], want_lab), f"image {i}"
        positive = want_idx >= 0
        assert torch.equal(gt_idx[i][positive], want_idx[positive]), f"image {i}"
        want_loc = encode(boxes[i][want_idx[positive]], priors[positive], VAR)
        torch.testing.assert_close(loc_t[i][positive], want_loc)
        assert (loc_t[i][~positive] == 0).all()
        # Every GT overlapping some prior has a bipartite prior of its own.
        forced = gt_idx[i][overlap[i] == 2.0]
        assert len(set(forced.tolist())) == len(forced)
        # How often a GT did not get its own best prior: the case the old rule got wrong.
        if n:
            iou = box_iou(boxes[i], box_convert(priors, "cxcywh", "xyxy"))
            best = iou.argmax(1)
            conflicts += int((gt_idx[i][best] != torch.arange(n)).sum())
    assert conflicts > 0  # the crowded cases exercise the bipartite step
    assert (lab_t[1] == 0).all() and (loc_t[1] == 0).all()


def test_ties_follow_caffes_scan_order():
    """Dyadic priors and boxes, so that many overlaps are exactly equal: ten copies of one box
    whose best priors tie in fours, competing for them (a top-k that ordered ties arbitrarily
    would give some copies the wrong prior)."""
    centres = (torch.arange(16, dtype=torch.float32) + 0.5) / 16
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([cx.flatten(), cy.flatten()], 1)
    priors = torch.cat([torch.cat([grid, torch.full_like(grid, s)], 1) for s in (0.125, 0.25)])
    copies = torch.tensor([[0.375, 0.375, 0.625, 0.625]]).repeat(10, 1)
    others = torch.tensor(
        [[0.25, 0.25, 0.5, 0.5], [0.4375, 0.375, 0.6875, 0.625], [0.0, 0.0, 0.125, 0.25]]
    )
    boxes = [torch.cat([others[:1], copies[:5], others[1:], copies[5:]]), copies[:3]]
    labels = [torch.arange(1, len(b) + 1) for b in boxes]
    gt_b, gt_l, mask = host_targets(boxes, labels, box_slots(len(boxes[0])))
    _, lab_t = match(gt_b, gt_l, mask, priors=priors, variances=VAR)
    _, overlap = match_indices(gt_b, mask, priors)
    for i in range(2):
        _, want_lab = oracle_targets(boxes[i], labels[i], priors)
        assert torch.equal(lab_t[i], want_lab)
        assert int((overlap[i] == 2.0).sum()) == len(boxes[i])  # every GT a prior of its own


def test_the_port_handles_the_released_special_cases():
    """The oracle itself, on hand-made cases with known answers."""
    priors = np.array(
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.0, 0.4, 0.5]], dtype=np.float32
    )
    # Two equal GTs on prior 0: the first takes it; the second takes its next best (prior 2,
    # IoU 0.8) even though prior 0 fits it better; prior 1 overlaps nothing.
    gt = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]], dtype=np.float32)
    assert caffe_match_bbox(gt, priors, 0.5).tolist() == [0, -1, 1]
    # A GT overlapping no prior is not matched; the per-prediction step still runs for others.
    gt = np.array([[2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.45, 0.5]], dtype=np.float32)
    assert caffe_match_bbox(gt, priors, 0.5).tolist() == [1, -1, 1]


def test_shared_best_prior_goes_to_the_first_gt_and_the_other_takes_its_next():
    # Dyadic coordinates, so the overlaps are exact: both GTs have IoU 0.6 with prior 0, GT b
    # 0.45 with prior 2. Caffe's scan meets (prior 0, GT 0) first: GT 0 takes it, the other is
    # left with its best free prior, prior 2 (the old rule gave prior 0 to the later GT and left
    # the earlier one without a prior of its own).
    priors = cxcywh([[0.5, 0.5, 0.25, 0.25], [0.1, 0.1, 0.05, 0.05], [0.65625, 0.5, 0.25, 0.25]])
    gt_a = [0.3125, 0.375, 0.5625, 0.625]
    gt_b = [0.4375, 0.375, 0.6875, 0.625]
    mask = torch.tensor([[True, True]])
    _, lab = match(
        torch.tensor([[gt_a, gt_b]]), torch.tensor([[1, 2]]), mask, priors=priors, variances=VAR
    )
    assert lab.tolist() == [[1, 0, 2]]
    _, lab = match(
        torch.tensor([[gt_b, gt_a]]), torch.tensor([[2, 1]]), mask, priors=priors, variances=VAR
    )
    assert lab.tolist() == [[2, 0, 1]]
    gt_idx, overlap = match_indices(torch.tensor([[gt_a, gt_b]]), mask, priors)
    assert gt_idx[0].tolist()[::2] == [0, 1] and overlap[0, 0].item() == 2.0


def test_a_gt_overlapping_no_prior_gets_no_match():
    priors = cxcywh([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]])
    gt = torch.tensor([[[3.0, 3.0, 3.5, 3.5]]])  # the old rule forced it onto prior 0
    loc_t, lab = match(
        gt, torch.tensor([[4]]), torch.tensor([[True]]), priors=priors, variances=VAR
    )
    assert lab.tolist() == [[0, 0]] and (loc_t == 0).all()


def test_box_slots_are_a_few_static_buckets():
    assert [box_slots(n) for n in (0, 1, 4, 5, 7, 9, 13, 20, 33, 50, 100)] == [
        4,
        4,
        4,
        6,
        8,
        12,
        16,
        24,
        48,
        64,
        128,
    ]
    assert box_slots(50, limit=40) == 40
    assert len({box_slots(n) for n in range(1, 129)}) == 11


def test_batched_iou_is_torchvisions_bit_for_bit():
    gen = torch.Generator().manual_seed(3)
    priors = box_convert(make_priors(ssd300_voc()), "cxcywh", "xyxy")
    boxes = torch.stack([random_boxes(7, gen) for _ in range(3)])
    want = torch.stack([box_iou(b, priors) for b in boxes])
    assert torch.equal(box_iou_batched(boxes, priors), want)


def test_forced_match_below_threshold():
    priors = cxcywh([[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.1, 0.1]])
    gt = torch.tensor([[[0.4, 0.4, 0.5, 0.5]]])  # IoU with prior 0 = 0.01/0.16 < 0.5
    loc_t, lab = match(
        gt, torch.tensor([[4]]), torch.tensor([[True]]), priors=priors, variances=VAR
    )
    assert lab.tolist() == [[4, 0]]
    torch.testing.assert_close(decode(loc_t[0, 0], priors[0], VAR), gt[0, 0])


def test_padded_slots_never_match_and_threshold_is_inclusive():
    priors = cxcywh([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0], [0.5, 0.5, 0.2, 0.2]])
    real = [0.0, 0.0, 0.5, 1.0]  # equals prior 0
    pad = [0.5, 0.0, 1.0, 1.0]  # equals prior 1, but masked out
    gt = torch.tensor([[real, pad]])
    _, lab = match(
        gt, torch.tensor([[3, 9]]), torch.tensor([[True, False]]), priors=priors, variances=VAR
    )
    assert lab.tolist() == [[3, 0, 0]]
    # A prior with IoU exactly 0.5 to a GT is positive (>=), one just below is not.
    priors = cxcywh([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.25], [0.5, 0.5, 0.5, 0.24]])
    gt = box_convert(cxcywh([[[0.5, 0.5, 0.5, 0.5]]]), "cxcywh", "xyxy")
    _, lab = match(
        gt,
        torch.tensor([[1]]),
        torch.tensor([[True]]),
        priors=priors,
        variances=VAR,
        iou_threshold=0.5,
    )
    assert lab.tolist() == [[1, 1, 0]]


def test_match_handles_zero_slots():
    priors = make_priors(ssd300_voc())[:10]
    loc_t, lab = match(
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.long),
        gt_mask=torch.zeros(2, 0, dtype=torch.bool),
        priors=priors,
        variances=VAR,
    )
    assert loc_t.shape == (2, 10, 4) and (lab == 0).all()


def test_matching_benchmark_writes_the_component_schema(tmp_path):
    """``scratchdet benchmark matching`` (tiny): both sides timed, the ``cases`` schema."""
    from scratchdet.cli import main
    from scratchdet.io import read_json

    out = tmp_path / "matching.json"
    assert (
        main(
            [
                "benchmark",
                "matching",
                "--batch-size",
                "2",
                "--boxes",
                "3",
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
    (case,) = read_json(out)["cases"]
    assert case["case"] == "batch 2, 3 boxes" and case["box_slots"] == 4
    assert case["reference"]["name"].startswith("torchvision")
    for side in ("ours", "reference"):
        assert 0 < case[side]["min_ms"] <= case[side]["median_ms"]
    assert case["ratio_min"] == pytest.approx(
        case["ours"]["min_ms"] / case["reference"]["min_ms"], rel=1e-3
    )
