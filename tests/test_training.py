import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from shm.data.people import PeopleMatting, SampleSpec
from shm.pretrained import load_pretrained
from shm.training.trainer import TrainConfig, stage_loss, train, trained_part


def _cfg(fake_data, tmp_path, tiny_weights, stage="end2end", steps=3, **kw):
    return TrainConfig(stage, fake_data, tmp_path / f"run-{stage}", init=tiny_weights, steps=steps,
                       batch_size=2, crop=64, lr=1e-2, checkpoint_every=1, val_images=2,
                       workers=0, **kw)


@pytest.mark.parametrize("mode", ["tnet", "mnet", "end2end"])
def test_samples_have_consistent_shapes_and_trimaps(fake_data, mode):
    data = PeopleMatting(fake_data, "train", SampleSpec(mode, 64))
    item = data[1]
    assert item["image"].shape == item["fg"].shape == item["bg"].shape == (3, 64, 64)
    assert item["alpha"].shape == (1, 64, 64) and item["trimap"].shape == (64, 64)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    composite = item["alpha"] * item["fg"] + (1 - item["alpha"]) * item["bg"]
    assert torch.allclose(composite, item["image"], atol=1e-5)
    assert set(item["trimap"].unique().tolist()) <= {0, 1, 2}
    again = data[1]
    assert torch.equal(again["image"], item["image"])  # deterministic per (seed, epoch, index)


@pytest.mark.parametrize("stage", ["tnet", "mnet", "end2end"])
def test_an_optimisation_step_lowers_the_loss(fake_data, tiny_weights, stage):
    torch.manual_seed(0)
    model = load_pretrained(tiny_weights).train()
    data = PeopleMatting(fake_data, "train", SampleSpec(stage, 64))
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in data[0]}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    net = trained_part(model, stage)
    first, _ = stage_loss(net, stage, batch)
    for _ in range(5):
        loss, _ = stage_loss(net, stage, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, _ = stage_loss(net, stage, batch)
    assert last.item() < first.item()


def test_training_writes_weights_log_and_validation(fake_data, tmp_path, tiny_weights):
    cfg = _cfg(fake_data, tmp_path, tiny_weights, stage="mnet")
    result = train(cfg, progress=False)
    assert set(result) >= {"sad", "mse", "sad_whole"}
    assert load_pretrained(cfg.out) is not None
    log = [json.loads(line) for line in (cfg.out / "log.jsonl").read_text().splitlines()]
    assert any("val" in r for r in log) and [r["step"] for r in log if "loss" in r] == [1, 2, 3]


def test_resume_gives_the_identical_next_step_loss(fake_data, tmp_path, tiny_weights):
    losses = {}
    train(_cfg(fake_data, tmp_path / "a", tiny_weights), progress=False,
          on_step=lambda s, loss: losses.setdefault(s, loss))

    class Killed(Exception):
        pass

    def kill_after_two(step, loss):
        if step == 2:
            raise Killed

    cfg = _cfg(fake_data, tmp_path / "b", tiny_weights)
    with pytest.raises(Killed):
        train(cfg, progress=False, on_step=kill_after_two)
    resumed = {}
    train(cfg, resume=True, progress=False, on_step=lambda s, loss: resumed.setdefault(s, loss))
    assert list(resumed) == [3]
    assert resumed[3] == losses[3]


def test_batch_of_one_is_rejected(fake_data, tmp_path, tiny_weights):
    cfg = _cfg(fake_data, tmp_path, tiny_weights)
    cfg.batch_size = 1
    with pytest.raises(ValueError, match="at least 2"):
        train(cfg, progress=False)


def test_unknown_stage_is_rejected(fake_data, tmp_path, tiny_weights):
    with pytest.raises(ValueError, match="tnet, mnet, end2end"):
        train(_cfg(fake_data, tmp_path, tiny_weights, stage="warmup"), progress=False)


@pytest.mark.slow
def test_torchrun_ddp_two_processes(fake_data, tmp_path, tiny_weights):
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", port,
           "-m", "shm.cli", "train", "--stage", "end2end",
           "--data", str(fake_data), "--out", str(out), "--init", str(tiny_weights),
           "--steps", "2", "--batch-size", "2", "--crop", "64", "--workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()][:5]
    assert res.returncode == 0, "\n".join(errors) + res.stderr[-1500:]
    assert load_pretrained(out) is not None
