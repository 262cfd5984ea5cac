"""The pieces that make training resumable: schedule, sample stream, metrics log, checkpoints."""

import pickle

import pytest
import torch

from scratchdet.config import TrainConfig
from scratchdet.engine.checkpoint import load_checkpoint, save_checkpoint
from scratchdet.engine.metrics_log import COLUMNS, MetricsLog
from scratchdet.engine.schedule import lr_at
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
    full = list(StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=1, start_step=0, max_steps=6))
    resumed = list(StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=1, start_step=3, max_steps=6))
    assert len(full) == 12 and resumed == full[6:]
    positions = [p for batch in full for p, _ in batch]
    assert positions == list(range(24))
    # Every epoch is a permutation of the whole dataset.
    indices = [i for batch in full for _, i in batch]
    assert sorted(indices[:7]) == list(range(7)) and sorted(indices[7:14]) == list(range(7))
    other_seed = list(StreamBatchSampler(n=7, batch_size=4, micro_batch=2, seed=2, start_step=0, max_steps=6))
    assert other_seed != full


def _row(step):
    return {c: float(step) for c in COLUMNS} | {"step": step, "num_pos": 1}


def test_metrics_log_truncate_drops_redone_and_cut_rows(tmp_path):
    log = MetricsLog(tmp_path / "m.csv")
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
            return (exec, ("import pathlib; pathlib.Path('%s').write_text('pwned')" % (tmp_path / "pwned"),))

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
    single = list(StreamBatchSampler(n=9, batch_size=4, micro_batch=1, seed=0, start_step=1, max_steps=3))
    shards = [list(StreamBatchSampler(n=9, batch_size=4, micro_batch=1, seed=0, start_step=1,
                                      max_steps=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4
    merged = [b for pair in zip(*shards) for b in pair]  # micro-step k: rank 0 then rank 1
    assert merged == single
    with pytest.raises(ValueError, match="multiple"):
        StreamBatchSampler(n=9, batch_size=4, micro_batch=3, seed=0, start_step=0, max_steps=1,
                           world_size=2)


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    from scratchdet.io import write_text

    write_text(tmp_path / "report.md", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_metrics_log_of_the_old_layout_is_read_and_rewritten_in_the_new(tmp_path):
    """Logs written before time_s/step_s (per-window images_per_s and elapsed_s) still resume."""
    path = tmp_path / "metrics.csv"
    path.write_text("step,lr,loss,loc_loss,conf_loss,grad_norm,num_pos,images_per_s,elapsed_s\n"
                    "0,0.1,2.0,1.0,1.0,3.0,5,4.0,0.5\n1,0.1,1.5,1.0,0.5,3.0,5,4.0,0.5\n")
    log = MetricsLog(path)
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
