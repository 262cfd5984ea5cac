"""Box coding and batched matching, checked against a per-image ssd.pytorch-style reference."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from scratchdet.ssd.box_coder import decode, encode
from scratchdet.ssd.matching import match, match_indices, pad_targets
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


# --- pad_targets -------------------------------------------------------------------------


def test_pad_targets_shapes_mask_and_empty_images():
    boxes = [torch.rand(3, 4), torch.zeros(0, 4), torch.rand(1, 4)]
    labels = [torch.tensor([1, 2, 3]), torch.zeros(0, dtype=torch.long), torch.tensor([7])]
    b, lab, mask = pad_targets(boxes, labels)
    assert b.shape == (3, 3, 4) and lab.shape == (3, 3) and mask.shape == (3, 3)
    assert mask.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    torch.testing.assert_close(b[0], boxes[0])
    assert lab[2].tolist() == [7, 0, 0] and lab.dtype == torch.long

    b, lab, mask = pad_targets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)])
    assert b.shape == (1, 1, 4) and not mask.any()

    b, _, mask = pad_targets(boxes, labels, max_boxes=5)
    assert b.shape == (3, 5, 4) and int(mask.sum()) == 4
    with pytest.raises(ValueError, match="max_boxes"):
        pad_targets(boxes, labels, max_boxes=2)
    with pytest.raises(ValueError):
        pad_targets([torch.rand(2, 4)], [torch.tensor([1])])


# --- matching ----------------------------------------------------------------------------


def reference_match(truths, labels, priors, threshold=0.5):
    """One image, following ssd.pytorch's box_utils.match line by line (labels already 1..C)."""
    p = priors.shape[0]
    if truths.shape[0] == 0:
        return torch.zeros(p, 4), torch.zeros(p, dtype=torch.long)
    overlaps = box_iou(truths, box_convert(priors, "cxcywh", "xyxy"))
    best_prior_idx = overlaps.argmax(1)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    best_truth_overlap = best_truth_overlap.clone()
    best_truth_idx = best_truth_idx.clone()
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.shape[0]):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    loc = encode(truths[best_truth_idx], priors, VAR)
    loc[conf == 0] = 0
    return loc, conf


def test_batched_match_equals_per_image_reference():
    gen = torch.Generator().manual_seed(1)
    priors = make_priors(ssd300_voc())
    counts = [5, 0, 1, 12, 3]
    boxes = [random_boxes(n, gen) for n in counts]
    # Include a duplicate box so two GTs share a best prior (tie-break rule exercised).
    boxes[3][7] = boxes[3][2]
    labels = [torch.randint(1, 21, (n,), generator=gen) for n in counts]
    gt_b, gt_l, mask = pad_targets(boxes, labels)
    loc_t, lab_t = match(gt_b, gt_l, mask, priors, VAR)
    assert loc_t.shape == (5, priors.shape[0], 4) and lab_t.shape == (5, priors.shape[0])
    for i in range(len(counts)):
        ref_loc, ref_lab = reference_match(boxes[i], labels[i], priors)
        assert torch.equal(lab_t[i], ref_lab), f"image {i}"
        torch.testing.assert_close(loc_t[i], ref_loc, rtol=1e-5, atol=1e-5)
    assert (lab_t[1] == 0).all() and (loc_t[1] == 0).all()
    assert (lab_t[0] > 0).sum() >= counts[0]  # every GT got at least its forced prior


def test_forced_match_below_threshold():
    priors = cxcywh([[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.1, 0.1]])
    gt = torch.tensor([[[0.4, 0.4, 0.5, 0.5]]])  # IoU with prior 0 = 0.01/0.16 < 0.5
    loc_t, lab = match(gt, torch.tensor([[4]]), torch.tensor([[True]]), priors, VAR)
    assert lab.tolist() == [[4, 0]]
    torch.testing.assert_close(decode(loc_t[0, 0], priors[0], VAR), gt[0, 0])


def test_shared_best_prior_goes_to_later_gt():
    priors = cxcywh([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]])
    # Both have IoU 0.82 with prior 0: the per-prior argmax would pick the first GT, the forced
    # best-prior rule gives the prior to the later one (ssd.pytorch's loop, last write wins).
    gt_a = [0.38, 0.4, 0.58, 0.6]
    gt_b = [0.42, 0.4, 0.62, 0.6]
    mask = torch.tensor([[True, True]])
    _, lab = match(torch.tensor([[gt_a, gt_b]]), torch.tensor([[1, 2]]), mask, priors, VAR)
    assert lab.tolist() == [[2, 0]]
    _, lab = match(torch.tensor([[gt_b, gt_a]]), torch.tensor([[2, 1]]), mask, priors, VAR)
    assert lab.tolist() == [[1, 0]]
    gt_idx, overlap = match_indices(torch.tensor([[gt_a, gt_b]]), mask, priors)
    assert gt_idx[0, 0].item() == 1 and overlap[0, 0].item() == 2.0


def test_padded_slots_never_match_and_threshold_is_inclusive():
    priors = cxcywh([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0], [0.5, 0.5, 0.2, 0.2]])
    real = [0.0, 0.0, 0.5, 1.0]  # equals prior 0
    pad = [0.5, 0.0, 1.0, 1.0]  # equals prior 1, but masked out
    gt = torch.tensor([[real, pad]])
    _, lab = match(gt, torch.tensor([[3, 9]]), torch.tensor([[True, False]]), priors, VAR)
    assert lab.tolist() == [[3, 0, 0]]
    # A prior with IoU exactly 0.5 to a GT is positive (>=), one just below is not.
    priors = cxcywh([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.25], [0.5, 0.5, 0.5, 0.24]])
    gt = box_convert(cxcywh([[[0.5, 0.5, 0.5, 0.5]]]), "cxcywh", "xyxy")
    _, lab = match(gt, torch.tensor([[1]]), torch.tensor([[True]]), priors, VAR, 0.5)
    assert lab.tolist() == [[1, 1, 0]]


def test_match_handles_zero_slots():
    priors = make_priors(ssd300_voc())[:10]
    loc_t, lab = match(
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(2, 0, dtype=torch.bool),
        priors,
        VAR,
    )
    assert loc_t.shape == (2, 10, 4) and (lab == 0).all()
