"""Saving and loading model weights: safetensors state_dict plus ``config.json`` beside it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from torch import nn

from shm.config import ModelConfig, build_model
from shm.fileio import atomic_write

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def default_weights_dir() -> Path:
    """Folder of the shipped default model inside the installed package."""
    return Path(str(resources.files("shm") / "weights"))


def save_pretrained(model: nn.Module, folder: str | Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``, atomically."""
    from safetensors.torch import save_file

    model = getattr(model, "module", model)  # unwrap DDP
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, p))
    text = json.dumps(model.config.to_dict(), indent=2)
    atomic_write(folder / CONFIG_FILE, lambda p: Path(p).write_text(text))


def _read(path: Path, hint: str) -> tuple[ModelConfig, dict]:
    """The ModelConfig and state_dict stored at ``path`` (a folder or its weights file)."""
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_FILE if path.is_dir() else path
    config = folder / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(f"No model weights at {path}: expected {WEIGHTS_FILE} and "
                                f"{CONFIG_FILE} there; {hint}.")
    return ModelConfig.from_dict(json.loads(config.read_text())), load_file(str(weights))


def load_matching_parts(model: nn.Module, path: str | Path) -> list[str]:
    """Load into ``model`` the parts ('tnet', 'mnet') of the weights at ``path`` whose
    configuration equals ``model.config``'s; return the names of the parts loaded.

    Lets a stage start from the previous stage's weights while a part's architecture changes.
    """
    saved, state = _read(Path(path), "pass --init a folder written by shm train")
    loaded = []
    for part in ("tnet", "mnet"):
        if getattr(saved, part) == getattr(model.config, part):
            prefix = f"{part}."
            getattr(model, part).load_state_dict(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
            loaded.append(part)
    return loaded


def load_pretrained(path: str | Path | None = None) -> nn.Module:
    """Load an SHM model in eval mode from a folder (or its ``model.safetensors``).

    path: None loads the shipped default model. Raises FileNotFoundError with the fix spelled out.
    """
    path = default_weights_dir() if path is None else Path(path)
    config, state = _read(path, "pass --weights pointing at a trained model")
    model = build_model(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
