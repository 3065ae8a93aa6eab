"""Inference-only rewrite of a network: batch norm folded into convolutions, channels-last."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode that computes the same function faster on CPU.

    Each ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential`` becomes one
    convolution with the normalisation in its weights and bias (the norm becomes an Identity),
    and 4-d weights are stored channels-last, the layout oneDNN's convolutions prefer. Outputs
    match the original within float rounding (about 1e-6). The copy's state_dict has different
    keys: use it for inference only, never save or train it. ``model`` is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, norm)
                module[i + 1] = nn.Identity()
    return folded.to(memory_format=torch.channels_last)
