"""Devices and precisions: choosing them, refusing the ones this machine lacks, and results on
the CPU. CUDA and MPS runs need the hardware; their tests are skipped without it."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shm.cli import app
from shm.inference.devices import OnDevice, onnx_providers, resolve_device, resolve_precision
from shm.inference.predictor import load_model

runner = CliRunner()
RGB = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
HAS_CUDA = torch.cuda.is_available()
HAS_MPS = torch.backends.mps.is_available()


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if HAS_CUDA else "mps" if HAS_MPS else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda:0"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:0", "mps:1", ""])
def test_unknown_device_is_one_sentence(name):
    with pytest.raises(ValueError, match=r"^Unknown device .*; choose auto, cpu, cuda \(or cuda:N\) "
                                         r"or mps\.$"):
        resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_one_sentence():
    with pytest.raises(ValueError, match=r"^Device 'cuda' is not available: this torch .* finds "
                                         r"no CUDA GPU; use cpu or auto\.$"):
        resolve_device("cuda")


def test_a_gpu_index_past_the_last_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")


@pytest.mark.skipif(HAS_MPS, reason="this machine has Apple's MPS")
def test_mps_without_it_is_one_sentence():
    with pytest.raises(ValueError, match="Device 'mps' is not available: Apple's MPS needs"):
        resolve_device("mps")


def test_precisions(monkeypatch):
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert resolve_precision(cpu) == torch.float32
    assert resolve_precision(cpu, "bf16") == torch.bfloat16
    assert resolve_precision(mps) == torch.float32 and resolve_precision(mps, "fp16") == torch.float16
    assert resolve_precision(cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision(cuda, "bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="Precision bf16 is not supported on cuda"):
        resolve_precision(cuda, "bf16")
    with pytest.raises(ValueError, match="Precision fp16 is not supported on cpu; use fp32 or auto"):
        resolve_precision(cpu, "fp16")
    with pytest.raises(ValueError, match="Unknown precision 'half'"):
        resolve_precision(cpu, "half")


def test_cpu_and_auto_give_the_same_matte_here(tiny_weights):
    cpu = load_model(tiny_weights, device="cpu").predict(RGB)
    auto = load_model(tiny_weights, device="auto").predict(RGB)
    if resolve_device("auto").type == "cpu":
        assert np.array_equal(cpu.alpha, auto.alpha) and np.array_equal(cpu.trimap, auto.trimap)
    else:  # a GPU in half precision
        assert np.abs(cpu.alpha - auto.alpha).max() < 0.05


def test_bfloat16_on_the_cpu_runs_the_device_path_with_float32_outputs(tiny_fast_weights):
    plain = load_model(tiny_fast_weights, device="cpu")
    half = load_model(tiny_fast_weights, device="cpu", precision="bf16")
    assert isinstance(half.model, OnDevice) and not isinstance(plain.model, OnDevice)
    assert half.tiles == plain.tiles  # the margin still comes from the M-Net
    a, b = plain.predict(RGB), half.predict(RGB)
    assert b.alpha.dtype == np.float32 and b.alpha.shape == (40, 60)
    assert 0 <= b.alpha.min() and b.alpha.max() <= 1
    assert np.abs(a.alpha - b.alpha).max() < 0.05 and np.abs(a.alpha - b.alpha).mean() < 0.01
    assert not np.array_equal(a.alpha, b.alpha)  # it did run in bfloat16


def test_a_half_precision_overflow_is_rerun_in_float32():
    class Overflows(torch.nn.Module):
        """inf under autocast (as an fp16 overflow gives), ones in float32."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, float("inf") if torch.is_autocast_enabled("cpu") else 1.0)

    runs = OnDevice.__new__(OnDevice)
    runs.device, runs.dtype = torch.device("cpu"), torch.bfloat16
    out = runs._run(Overflows(), torch.zeros(1, 1, 2, 2))
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(1, 1, 2, 2))


def test_onnx_providers():
    import onnxruntime as ort

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not on mps"):
        onnx_providers("mps")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        onnx_providers("tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert onnx_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(ValueError, match="has no CUDA provider"):
            onnx_providers("cuda")


def test_cutout_on_cpu_and_auto(tmp_path, tiny_weights):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    outputs = {}
    for device in ("cpu", "auto"):
        out = tmp_path / device
        res = runner.invoke(app, ["cutout", str(tmp_path / "a.png"), "-o", str(out), "--format",
                                  "alpha", "--weights", str(tiny_weights), "--device", device])
        assert res.exit_code == 0, res.output
        outputs[device] = np.asarray(Image.open(out / "a.png"), np.int16)
    tolerance = 0 if resolve_device("auto").type == "cpu" else 13
    assert np.abs(outputs["cpu"] - outputs["auto"]).max() <= tolerance


@pytest.mark.parametrize("command", ["cutout", "batch", "serve"])
@pytest.mark.parametrize("option, message", [
    (["--device", "tpu"], "Unknown device 'tpu'"),
    (["--device", "cpu", "--precision", "fp16"], "Precision fp16 is not supported on cpu"),
    (["--backend", "onnx", "--precision", "fp16"], "onnx backend runs in fp32 only, not fp16"),
    (["--backend", "onnx", "--device", "mps"], "not on mps; use the torch backend"),
])
def test_device_errors_are_one_sentence_before_any_work(tmp_path, command, option, message):
    args = {"cutout": [str(tmp_path), "-o", str(tmp_path / "out")],
            "batch": [str(tmp_path), str(tmp_path / "out")], "serve": ["--port", "1"]}[command]
    res = runner.invoke(app, [command, *args, *option])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Loading the model" not in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_cutout_on_a_missing_gpu_is_one_sentence(tmp_path):
    res = runner.invoke(app, ["cutout", str(tmp_path), "--device", "cuda"])
    assert res.exit_code == 2 and "finds no CUDA GPU; use cpu or auto." in res.output


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision, worst, mean", [("fp32", 1e-3, 1e-5), ("fp16", 0.1, 5e-4),
                                                    ("bf16", 0.3, 5e-3)])
def test_cuda_matches_the_cpu(precision, worst, mean):
    """The shipped model on the astronaut: CUDA against the CPU's float32 (bf16 bounds from its
    CPU run: mean 0.0027, max 0.24; fp16 has 3 more mantissa bits)."""
    from tests.conftest import astronaut

    image = astronaut()
    cpu = load_model(device="cpu").predict(image)
    gpu = load_model(device="cuda", precision=precision).predict(image)
    diff = np.abs(cpu.alpha - gpu.alpha)
    assert gpu.alpha.dtype == np.float32
    assert diff.max() < worst and diff.mean() < mean, (diff.max(), diff.mean())


def test_ray_batch_leaves_the_device_to_its_actors_but_checks_the_name(tmp_path, monkeypatch):
    import shm.batch

    seen = []
    def run_batch(*args, model, **kwargs):
        seen.append(model)
        return shm.batch.Summary()

    monkeypatch.setattr(shm.batch, "run_batch", run_batch)
    res = runner.invoke(app, ["batch", str(tmp_path), str(tmp_path / "out"), "--engine", "ray",
                              "--device", "cuda:3", "--precision", "fp16"])
    assert res.exit_code == 0, res.output
    assert [(s.device, s.precision) for s in seen] == [("cuda:3", "fp16")]  # not refused here
    res = runner.invoke(app, ["batch", str(tmp_path), str(tmp_path / "out"), "--engine", "ray",
                              "--device", "gpu"])
    assert res.exit_code == 2 and "Unknown device 'gpu'" in res.output and len(seen) == 1
