import math

import pytest
import torch

from shm.training import losses


def test_charbonnier_on_hand_made_values():
    pred = torch.tensor([0.0, 0.5, 1.0])
    target = torch.tensor([0.0, 0.0, 0.25])
    expected = (1e-6 + math.sqrt(0.25 + 1e-12) + math.sqrt(0.5625 + 1e-12)) / 3
    assert losses.charbonnier(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_composition_loss_is_zero_for_the_true_alpha():
    fg, bg = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    alpha = torch.rand(1, 1, 4, 4)
    image = alpha * fg + (1 - alpha) * bg
    assert losses.composition_loss(alpha, fg, bg, image).item() == pytest.approx(1e-6, abs=1e-6)


def test_total_loss_weights_the_terms():
    fg, bg = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    gt = torch.ones(1, 1, 2, 2)
    batch = {"alpha": gt, "fg": fg, "bg": bg, "image": gt.expand(1, 3, 2, 2),
             "trimap": torch.full((1, 2, 2), 2)}
    pred = torch.zeros(1, 1, 2, 2)
    logits = torch.zeros(1, 3, 2, 2)  # uniform: cross-entropy ln 3
    out = {"alpha": pred, "trimap_logits": logits}
    # L_alpha = 1, L_comp = 1 -> L_p = 1; L_t = ln 3
    assert losses.total_loss(out, batch).item() == pytest.approx(1 + 0.01 * math.log(3), rel=1e-5)
