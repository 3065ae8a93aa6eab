"""Weight averaging, a "model soup" (Wortsman et al., ICML 2022): the mean of the weights of
models fine-tuned from one start. Runs from one start stay in one basin, so their mean is a
model too; on val it was steadier on hard photos than the checkpoints it averaged
(the model card's "Model soups")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from shm.config import build_model
from shm.pretrained import load_pretrained


def average_models(sources: Sequence[str | Path]) -> nn.Module:
    """The model (eval mode) whose floating-point weights and buffers are the mean of those of
    the weight folders ``sources`` (at least one, all of one ``ModelConfig``); integer buffers
    (batch-norm step counts) are the first source's. Raises ValueError on a mixed set."""
    if not sources:
        raise ValueError("Name at least one weight folder to average.")
    models = [load_pretrained(p) for p in sources]
    config = models[0].config
    for path, model in zip(sources[1:], models[1:], strict=True):
        if model.config != config:
            raise ValueError(f"{path} holds another architecture than {sources[0]}; average "
                             "only models of one config, fine-tuned from one start.")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype)
            if v.is_floating_point() else v for k, v in states[0].items()}
    soup = build_model(config)
    soup.load_state_dict(mean, strict=True)
    return soup.eval()
