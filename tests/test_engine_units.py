"""The pieces that make training resumable: schedule, sample stream, training log, checkpoints."""

import pickle

import pytest
import torch

from scratchdet.config import TrainConfig
from scratchdet.engine.checkpoint import load_checkpoint, save_checkpoint
from scratchdet.engine.schedule import lr_at
from scratchdet.engine.training_log import COLUMNS, TrainingLog
from scratchdet.errors import DataError
from scratchdet.input.sampling import StreamBatchSampler
from scratchdet.io import atomic_path


def test_lr_warmup_then_multistep():
    cfg = TrainConfig(lr=0.05, milestones=[10, 20], gamma=0.1, warmup_steps=4, warmup_factor=0.25)
    assert lr_at(0, cfg) == pytest.approx(0.05 * 0.25)
    assert lr_at(2, cfg) == pytest.approx(0.05 * (0.25 * 0.5 + 0.5))
    assert lr_at(4, cfg) == pytest.approx(0.05)
    assert lr_at(9, cfg) == pytest.approx(0.05)
    assert lr_at(10, cfg) == pytest.approx(0.005)
    assert lr_at(25, cfg) == pytest.approx(0.0005)


def test_stream_resumes_where_it_stopped():
    full = list(
        StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=1, start_step=0, max_steps=6)
    )
    resumed = list(
        StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=1, start_step=3, max_steps=6)
    )
    assert len(full) == 12 and resumed == full[6:]
    positions = [p for batch in full for p, _ in batch]
    assert positions == list(range(24))
    # Every epoch is a permutation of the whole dataset.
    indices = [i for batch in full for _, i in batch]
    assert sorted(indices[:7]) == list(range(7)) and sorted(indices[7:14]) == list(range(7))
    other_seed = list(
        StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=2, start_step=0, max_steps=6)
    )
    assert other_seed != full


def _row(step):
    return {c: float(step) for c in COLUMNS} | {"step": step, "num_pos": 1}


def test_training_log_truncate_drops_redone_and_cut_rows(tmp_path):
    log = TrainingLog(tmp_path / "m.csv")
    for s in range(5):
        log.append(_row(s))
    with open(log.path, "a") as fh:  # a row cut short by a kill
        fh.write("5,0.1,")
    log.truncate(3)
    assert [int(r["step"]) for r in log.read()] == [0, 1, 2]
    log.append(_row(3))
    assert [int(r["step"]) for r in log.read()] == [0, 1, 2, 3]


def test_checkpoint_roundtrip_and_refuses_pickled_objects(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "step": 3, "names": ["a"]}, good)
    assert load_checkpoint(good)["step"] == 3

    class Evil:
        def __reduce__(self):
            return (
                exec,
                ("import pathlib; pathlib.Path('%s').write_text('pwned')" % (tmp_path / "pwned"),),
            )

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    with pytest.raises(DataError, match="refused to load"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(DataError, match="unreadable or truncated"):
        load_checkpoint(truncated)
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    assert pickle  # the module under test must not need it to refuse


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_stream_shards_across_processes():
    single = list(
        StreamBatchSampler(n=9, batch_size=4, micro_batch=1, seed=0, start_step=1, max_steps=3)
    )
    shards = [
        list(
            StreamBatchSampler(
                n=9,
                batch_size=4,
                micro_batch=1,
                seed=0,
                start_step=1,
                max_steps=3,
                rank=r,
                world_size=2,
            )
        )
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 4
    merged = [b for pair in zip(*shards) for b in pair]  # micro-step k: rank 0 then rank 1
    assert merged == single
    with pytest.raises(ValueError, match="multiple"):
        StreamBatchSampler(
            n=9, batch_size=4, micro_batch=3, seed=0, start_step=0, max_steps=1, world_size=2
        )


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    from scratchdet.io import write_text

    write_text(tmp_path / "report.md", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask


# --- BatchNorm as the releases train it (scratchdet.models.batchnorm) -------------------------


def _caffe_bn_port(batches, groups, fraction=0.999):
    """Caffe's BatchNormLayer::Forward_cpu arithmetic (batch_norm_layer.cpp:107-146), per step,
    in float64, on the first group's images (the root GPU's): the three blobs and the test-time
    mean and variance they give (blob / factor)."""
    import numpy as np

    blob0 = blob1 = None
    factor = 0.0
    for x in batches:
        x = x.double().numpy()[0::groups]  # image i*G + k is in group k; group 0 = images 0, G..
        m = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=(0, 2, 3))
        var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
        if blob0 is None:
            blob0, blob1 = np.zeros_like(mean), np.zeros_like(var)
        factor = factor * fraction + 1
        blob0 = fraction * blob0 + mean
        blob1 = fraction * blob1 + m / (m - 1) * var
    return blob0 / factor, blob1 / factor


@pytest.mark.parametrize("group", [0, 2, 4])
def test_caffe_running_average_matches_the_layer(group):
    """Forty training steps: the running statistics are Caffe's test-time estimates (not
    PyTorch's momentum from mean 0 / variance 1), and eval normalises with them."""
    from scratchdet.models.batchnorm import GroupBatchNorm2d

    torch.manual_seed(0)
    bn = GroupBatchNorm2d(3, group=group, stats="caffe", eps=1e-3)
    batches = [torch.randn(8, 3, 4, 5) * (1 + 0.1 * t) + 0.2 * t for t in range(40)]
    for x in batches:
        bn(x)
    mean, var = _caffe_bn_port(batches, 8 // group if group else 1)
    assert int(bn.num_batches_tracked) == 40
    torch.testing.assert_close(
        bn.running_mean.double(), torch.from_numpy(mean), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(bn.running_var.double(), torch.from_numpy(var), rtol=1e-5, atol=1e-6)
    # After one step the estimate is that batch's statistics (PyTorch's 0.001 would be ~0, ~1).
    one = GroupBatchNorm2d(3, group=group, stats="caffe")
    one(batches[-1])
    mean1, var1 = _caffe_bn_port(batches[-1:], 8 // group if group else 1)
    torch.testing.assert_close(
        one.running_mean.double(), torch.from_numpy(mean1), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        one.running_var.double(), torch.from_numpy(var1), rtol=1e-5, atol=1e-6
    )
    # A converted model saves plain BatchNorm2d's keys and detects as one.
    plain = torch.nn.BatchNorm2d(3, eps=1e-3)
    plain.load_state_dict(bn.state_dict())
    bn.eval(), plain.eval()
    torch.testing.assert_close(bn(batches[0]), plain(batches[0]))


def test_group_batchnorm_normalises_each_group_and_its_gradient():
    """Ghost BN over groups of 2 in a batch of 8 is plain BN applied to each group alone (output
    and gradients); group 0 with PyTorch statistics is nn.BatchNorm2d exactly."""
    from scratchdet.models.batchnorm import GroupBatchNorm2d

    torch.manual_seed(1)
    x = torch.randn(8, 3, 5, 5) * 2 + 1
    ghost = GroupBatchNorm2d(3, group=2, stats="torch")
    ref = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        ghost.weight.uniform_(0.5, 1.5), ghost.bias.uniform_(-1, 1)
    ref.load_state_dict(ghost.state_dict())
    y = ghost(x)
    groups = 4
    y_ref = torch.empty_like(x)
    for k in range(groups):
        y_ref[k::groups] = (
            ref(x[k::groups])
            if k == 0
            else torch.nn.functional.batch_norm(
                x[k::groups], None, None, ref.weight, ref.bias, True
            )
        )
    torch.testing.assert_close(y, y_ref)
    (y * torch.arange(y.numel()).reshape(y.shape)).sum().backward()
    (y_ref * torch.arange(y.numel()).reshape(y.shape)).sum().backward()
    torch.testing.assert_close(ghost.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ghost.bias.grad, ref.bias.grad)
    # The running statistics came from the first group (images 0, 4), as ref's did.
    torch.testing.assert_close(ghost.running_mean, ref.running_mean)
    torch.testing.assert_close(ghost.running_var, ref.running_var)

    whole, plain = GroupBatchNorm2d(3, group=0, stats="torch"), torch.nn.BatchNorm2d(3)
    for _ in range(3):
        torch.testing.assert_close(whole(x), plain(x))
    torch.testing.assert_close(whole.running_var, plain.running_var)
    with pytest.raises(ValueError, match="groups of 3"):
        GroupBatchNorm2d(3, group=3)(x)


def test_convert_batchnorm_keeps_parameters_and_state_keys():
    from scratchdet.models.batchnorm import GroupBatchNorm2d, convert_batchnorm

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 1),
        torch.nn.BatchNorm2d(4, eps=1e-3),
        torch.nn.Sequential(torch.nn.BatchNorm2d(4)),
    )
    keys = list(model.state_dict())
    weight = model[1].weight
    assert convert_batchnorm(model) is model and type(model[1]) is torch.nn.BatchNorm2d
    convert_batchnorm(model, group=2, stats="caffe")
    assert isinstance(model[1], GroupBatchNorm2d) and isinstance(model[2][0], GroupBatchNorm2d)
    assert model[1].weight is weight and model[1].eps == 1e-3 and model[1].stats == "caffe"
    assert list(model.state_dict()) == keys
    out = model(torch.randn(4, 3, 6, 6).contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)


# --- Parameter groups and Caffe's SGD (scratchdet.engine.param_groups) ------------------------


class _Tiny(torch.nn.Module):
    """A backbone conv with bias + BN, a head conv + BN + L2Norm: every role of the rules."""

    def __init__(self):
        from scratchdet.models.layers import L2Norm

        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
        self.head = torch.nn.Sequential(
            L2Norm(3, 20.0), torch.nn.Conv2d(3, 2, 1, bias=False), torch.nn.BatchNorm2d(2)
        )


def _cfg(**train):
    from scratchdet.config import config_from_dict

    return config_from_dict(
        {
            "model": {"name": "dsod300"},
            "train": {"lr": 0.1, "weight_decay": 0.01, "momentum": 0.9} | train,
        }
    )


def test_caffe_param_groups_by_role():
    from scratchdet.engine.param_groups import parameter_roles
    from scratchdet.engine.step import make_optimizer

    model = _Tiny()
    roles = {name: role for name, _, role in parameter_roles(model)}
    assert roles == {
        "backbone.0.weight": "weight",
        "backbone.0.bias": "bias",
        "backbone.1.weight": "bn_backbone",
        "backbone.1.bias": "bn_backbone",
        "head.0.weight": "l2norm",
        "head.1.weight": "weight",
        "head.2.weight": "bn_head",
        "head.2.bias": "bn_head",
    }
    groups = make_optimizer(model, _cfg(param_groups="caffe")).param_groups
    lr_decay = {
        name: (g["lr"], g["weight_decay"])
        for g in groups
        for p in g["params"]
        for name, q in model.named_parameters()
        if q is p
    }
    assert lr_decay["backbone.0.bias"] == (pytest.approx(0.2), 0.0)
    assert lr_decay["head.2.weight"] == (pytest.approx(0.1), 0.0)
    assert lr_decay["backbone.1.weight"] == lr_decay["head.0.weight"] == (0.1, 0.01)
    uniform = make_optimizer(model, _cfg()).param_groups
    assert len(uniform) == 1 and (uniform[0]["lr"], uniform[0]["weight_decay"]) == (0.1, 0.01)


def _caffe_sgd_port(params, grads_per_step, lrs, mults, momentum, weight_decay):
    """Caffe's SGDSolver (sgd_solver.cpp:183,249; sgd_solver.cu:10), per blob, in float64:
    v = momentum v + lr lr_mult (g + weight_decay decay_mult w); w -= v."""
    import numpy as np

    ws = [p.detach().double().numpy().copy() for p in params]
    hs = [np.zeros_like(w) for w in ws]
    for grads, lr in zip(grads_per_step, lrs):
        for i, (g, (lr_mult, decay_mult)) in enumerate(zip(grads, mults)):
            diff = g.double().numpy() + weight_decay * decay_mult * ws[i]
            hs[i] = momentum * hs[i] + lr * lr_mult * diff
            ws[i] = ws[i] - hs[i]
    return ws


@pytest.mark.parametrize("sgd", ["caffe", "torch"])
def test_sgd_momentum_form_across_rate_changes(sgd):
    """Through a warm-up and a milestone, `sgd: caffe` steps as Caffe's solver does; `torch`
    differs from it exactly where the rate changes (torch applies the new rate to the whole
    momentum)."""
    from scratchdet.engine.param_groups import RULES, parameter_roles, set_lr
    from scratchdet.engine.step import make_optimizer

    torch.manual_seed(2)
    model = _Tiny()
    start = [p.detach().clone() for p in model.parameters()]
    cfg = _cfg(param_groups="caffe", sgd=sgd)
    optimizer = make_optimizer(model, cfg)
    lrs = [0.02, 0.06, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001]
    steps = [[torch.randn_like(p) for p in model.parameters()] for _ in lrs]
    for lr, grads in zip(lrs, steps):
        set_lr(optimizer, lr)
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        optimizer.step()
    role = {id(p): r for _, p, r in parameter_roles(model)}
    mults = [RULES[role[id(p)]] for p in model.parameters()]
    caffe = _caffe_sgd_port(start, steps, lrs, mults, 0.9, 0.01)
    got = [p.detach().double() for p in model.parameters()]
    same = all(
        torch.allclose(g, torch.from_numpy(c), rtol=1e-5, atol=1e-6) for g, c in zip(got, caffe)
    )
    assert same == (sgd == "caffe")


def test_release_recipe_step_asks_nothing_of_the_host():
    """Ghost BN with Caffe's running average, Caffe's groups and momentum form: a micro-batch
    (on the data-free meta device) and an optimizer step after a rate change (on the CPU, with
    fused SGD) read nothing back and copy nothing in."""
    from scratchdet.benchmark.host_traffic import HostTrafficCounter
    from scratchdet.config import config_from_dict
    from scratchdet.engine.step import TrainStep
    from scratchdet.input import TrainBatch
    from scratchdet.models import build_model
    from scratchdet.models.batchnorm import convert_batchnorm

    small = {
        "name": "dsod300",
        "stem_channels": 16,
        "bottleneck": 16,
        "growth": 8,
        "theta": 0.5,
        "stem": False,
        "transition_wo_pool": False,
        "prediction": "plain",
    }
    cfg = config_from_dict(
        {
            "model": small,
            "train": {
                "batch_size": 4,
                "bn_group": 2,
                "bn_stats": "caffe",
                "param_groups": "caffe",
                "sgd": "caffe",
                "precision": "fp32",
            },
        }
    )
    meta = torch.device("meta")
    for device in (meta, torch.device("cpu")):
        torch.manual_seed(0)
        with device:
            model = build_model(small, num_classes=5, load_pretrained=False).train()
        model = convert_batchnorm(model, 2, "caffe")
        step = TrainStep(model, cfg, device=device, accumulation=1)
        p = model.priors.shape[0]
        with device:
            batch = TrainBatch(
                torch.zeros(4, 3, 300, 300),
                torch.zeros(4, p, 4),
                torch.ones(4, p, dtype=torch.long),
            )
        if device == meta:
            with HostTrafficCounter(meta) as seen:
                step.begin(0.01)
                step.micro_step(batch)
            assert seen.counts() == {"to_device": 0, "to_host": 0, "data_dependent": 0}, seen
        else:
            assert step.optimizer.defaults["fused"] and len(step.optimizer.param_groups) == 2
            step.begin(0.01)
            for q in model.parameters():
                q.grad = torch.randn_like(q)
            with HostTrafficCounter(meta) as seen:
                step.begin(0.001)  # a milestone: the momentum buffers are rescaled
                for q in model.parameters():
                    q.grad = torch.randn_like(q)
                step.finish()
            assert seen.data_dependent == [] and seen.to_host == [], seen


def test_a_training_log_of_the_old_layout_is_read_and_rewritten_in_the_new(tmp_path):
    """Logs written before time_s/step_s (per-window images_per_s and elapsed_s) still resume."""
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,lr,loss,loc_loss,conf_loss,grad_norm,num_pos,images_per_s,elapsed_s\n"
        "0,0.1,2.0,1.0,1.0,3.0,5,4.0,0.5\n1,0.1,1.5,1.0,0.5,3.0,5,4.0,0.5\n"
    )
    log = TrainingLog(path)
    assert [r["loss"] for r in log.read()] == ["2.0", "1.5"] and log.last_time() == 0.0
    log.truncate(1)
    assert path.read_text().splitlines() == [",".join(COLUMNS), "0,0.1,2.0,1.0,1.0,3.0,5,,,,4.0"]
    log.append({c: 1.0 for c in COLUMNS} | {"step": 1, "time_s": 7.5})
    assert log.last_time() == 7.5


def test_precise_bn_shows_its_progress(monkeypatch, capsys):
    """The PreciseBN passes report their progress on stderr like training and detection."""
    import torch

    from scratchdet.engine.precise_bn import precise_bn

    monkeypatch.setenv("SCRATCHDET_PROGRESS", "lines")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    assert precise_bn(model, batches, 3) == 3
    assert "precise-bn: batch 3/3 (100%)" in capsys.readouterr().err
