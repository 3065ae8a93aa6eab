import pytest
import torch
from conftest import TINY_CONFIG, TINY_FAST_CONFIG
from typer.testing import CliRunner

from shm.cli import app
from shm.config import ModelConfig, build_model
from shm.pretrained import load_pretrained, save_pretrained
from shm.training.soup import average_models

runner = CliRunner()


def _model(seed: int, config: dict = TINY_CONFIG) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig.from_dict(config))
    for buffer in model.buffers():  # batch-norm statistics and step counts differ too
        buffer.add_(seed)
    return model


def test_average_is_the_mean_of_the_weights_and_keeps_the_first_step_counts(tmp_path):
    for seed in (1, 2, 6):
        save_pretrained(_model(seed), tmp_path / str(seed))
    soup = average_models([tmp_path / "1", tmp_path / "2", tmp_path / "6"])
    states = [_model(s).state_dict() for s in (1, 2, 6)]
    checked = 0
    for key, value in soup.state_dict().items():
        if value.is_floating_point():
            expected = (states[0][key] + states[1][key] + states[2][key]) / 3
            assert torch.allclose(value, expected, atol=1e-6), key
            checked += not torch.equal(states[0][key], states[1][key])
        else:
            assert torch.equal(value, states[0][key]), key
    assert checked > 100 and not soup.training


def test_average_refuses_models_of_two_architectures(tmp_path):
    save_pretrained(_model(1), tmp_path / "a")
    save_pretrained(_model(1, TINY_FAST_CONFIG), tmp_path / "b")
    with pytest.raises(ValueError, match="another architecture"):
        average_models([tmp_path / "a", tmp_path / "b"])


def test_average_command_writes_a_loadable_model_and_explains_bad_input(tmp_path):
    for seed in (1, 2):
        save_pretrained(_model(seed), tmp_path / str(seed))
    res = runner.invoke(app, ["average", str(tmp_path / "1"), str(tmp_path / "2"),
                              "-o", str(tmp_path / "soup")])
    assert res.exit_code == 0, res.output
    first, soup = _model(1).state_dict(), load_pretrained(tmp_path / "soup").state_dict()
    key = next(k for k, v in first.items() if v.is_floating_point())
    assert torch.allclose(soup[key], (first[key] + _model(2).state_dict()[key]) / 2, atol=1e-6)
    res = runner.invoke(app, ["average", str(tmp_path / "1"), str(tmp_path / "nowhere"),
                              "-o", str(tmp_path / "soup2")])
    assert res.exit_code == 1 and "No model weights at" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "soup2").exists()
