"""MultiBox loss against a plain per-image, per-prior reference (ssd.pytorch semantics)."""

from __future__ import annotations

import math

import pytest
import torch

from scratchdet.ssd.loss import MultiBoxLoss


def reference_loss(loc_p, conf_p, loc_t, labels, ratio=3, loc_weight=1.0):
    """Loops over images and priors; returns (loss, loc, conf, num_pos) as floats."""
    b, p, _ = conf_p.shape
    loc_sum = conf_sum = 0.0
    total_pos = 0
    for i in range(b):
        ce, pos = [], []
        for j in range(p):
            logits = conf_p[i, j].double().tolist()
            m = max(logits)
            lse = m + math.log(sum(math.exp(x - m) for x in logits))
            ce.append(lse - logits[int(labels[i, j])])
            pos.append(int(labels[i, j]) > 0)
            if pos[-1]:
                for d in range(4):
                    diff = abs(float(loc_p[i, j, d]) - float(loc_t[i, j, d]))
                    loc_sum += 0.5 * diff * diff if diff < 1 else diff - 0.5
        n_pos = sum(pos)
        total_pos += n_pos
        num_neg = min(ratio * n_pos, p - 1)
        negatives = sorted((j for j in range(p) if not pos[j]), key=lambda j: -ce[j])
        chosen = set(negatives[:num_neg]) | {j for j in range(p) if pos[j]}
        conf_sum += sum(ce[j] for j in chosen)
    n = max(total_pos, 1)
    loc, conf = loc_sum / n, conf_sum / n
    return loc_weight * loc + conf, loc, conf, total_pos


def random_batch(b=4, p=60, k=6, seed=0, pos_frac=0.1):
    gen = torch.Generator().manual_seed(seed)
    loc_p = torch.randn(b, p, 4, generator=gen) * 1.5
    conf_p = torch.randn(b, p, k, generator=gen) * 2
    loc_t = torch.randn(b, p, 4, generator=gen)
    labels = torch.randint(1, k, (b, p), generator=gen)
    labels[torch.rand(b, p, generator=gen) > pos_frac] = 0
    labels[1] = 0  # an image without positives
    if b > 2:  # half positives: 3 * num_pos exceeds the negatives there are (and P - 1)
        labels[2, : p // 2] = torch.randint(1, k, (p // 2,), generator=gen)
    return loc_p, conf_p, loc_t, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("ratio", "loc_weight"), [(3, 1.0), (1, 2.0)])
def test_matches_reference(seed, ratio, loc_weight):
    loc_p, conf_p, loc_t, labels = random_batch(seed=seed)
    out = MultiBoxLoss(neg_pos_ratio=ratio, loc_weight=loc_weight)(loc_p, conf_p, loc_t, labels)
    loss, loc, conf, num_pos = reference_loss(loc_p, conf_p, loc_t, labels, ratio, loc_weight)
    assert int(out["num_pos"]) == num_pos
    assert out["loc"].item() == pytest.approx(loc, rel=1e-5, abs=1e-5)
    assert out["conf"].item() == pytest.approx(conf, rel=1e-5, abs=1e-5)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5, abs=1e-5)


def test_gradients_reach_positives_and_mined_negatives_only():
    loc_p, conf_p, loc_t, labels = random_batch(b=2, p=40, seed=3)
    labels[1] = 0
    labels[0] = 0
    labels[0, :2] = torch.tensor([1, 3])  # 2 positives -> 6 hard negatives
    loc_p.requires_grad_(True)
    conf_p.requires_grad_(True)
    MultiBoxLoss()(loc_p, conf_p, loc_t, labels)["loss"].backward()
    loc_touched = loc_p.grad.abs().sum(-1) > 0
    assert torch.equal(loc_touched, labels > 0)
    conf_touched = conf_p.grad.abs().sum(-1) > 0
    assert conf_touched[0].sum().item() == 2 + 6
    assert not conf_touched[1].any()  # no positives in image 1: no negatives mined there
    # The mined negatives are the ones with the largest background loss.
    bg_loss = -conf_p.detach()[0].log_softmax(-1)[:, 0]
    bg_loss[:2] = -1
    mined = torch.nonzero(conf_touched[0, 2:]).flatten() + 2
    assert set(bg_loss.topk(6).indices.tolist()) == set(mined.tolist())


def test_all_background_batch_is_finite_zero():
    loc_p, conf_p, loc_t, _ = random_batch(b=2, p=30)
    loc_p.requires_grad_(True)
    conf_p.requires_grad_(True)
    out = MultiBoxLoss()(loc_p, conf_p, loc_t, torch.zeros(2, 30, dtype=torch.long))
    assert out["loss"].item() == 0.0 and int(out["num_pos"]) == 0
    out["loss"].backward()
    assert torch.isfinite(conf_p.grad).all() and (conf_p.grad == 0).all()


def test_low_precision_inputs_give_float32_loss():
    loc_p, conf_p, loc_t, labels = random_batch(seed=4)
    loss_fn = MultiBoxLoss()
    half = loss_fn(loc_p.bfloat16(), conf_p.bfloat16(), loc_t, labels)
    assert half["loss"].dtype == torch.float32
    # Same as the float32 loss of the bf16-rounded inputs: the loss itself adds no bf16 error.
    ref = loss_fn(loc_p.bfloat16().float(), conf_p.bfloat16().float(), loc_t, labels)
    torch.testing.assert_close(half["loss"], ref["loss"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = loss_fn(loc_p, conf_p, loc_t, labels)
    assert auto["loss"].dtype == torch.float32
    torch.testing.assert_close(auto["loss"], loss_fn(loc_p, conf_p, loc_t, labels)["loss"])


def test_shape_mismatch_raises():
    loc_p, conf_p, loc_t, labels = random_batch()
    with pytest.raises(ValueError, match="shape"):
        MultiBoxLoss()(loc_p, conf_p, loc_t, labels[:, :-1])
