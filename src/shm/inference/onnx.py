"""ONNX export (T-Net and M-Net as two graphs with dynamic height and width) and an
onnxruntime model with the same interface as ``SHM`` for ``Matter``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shm.config import ModelConfig
from shm.models.layers import crop_border
from shm.models.mnet import MNETS
from shm.models.shm import flip_averaged, tnet_at_reduced_size
from shm.pretrained import CONFIG_FILE, WEIGHTS_FILE

TNET_FILE, MNET_FILE = "tnet.onnx", "mnet.onnx"
MNET_CROP = "onnx_mnet_crop"  # config.json key: the margin mnet.onnx drops
EXPORT_FORMAT = 3  # raised whenever the graphs' inputs, outputs or crop change


def export_onnx(model: nn.Module, folder: str | Path, opset: int = 17,
                crop: int | None = None) -> Path:
    """Write ``tnet.onnx`` (image (1, 3, H, W) -> logits), ``mnet.onnx`` (image, trimap_probs
    (B, 3, H, W) -> alpha_r (B, 1, H - 2 crop, W - 2 crop)) and ``config.json`` into ``folder``.

    crop: the tile margin the M-Net graph drops (default: the M-Net's context, the default
    margin); ``OnnxSHM`` then runs tiles with that margin or a larger one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    crop = model.mnet_context if crop is None else crop
    dyn = {2: "height", 3: "width"}
    side = 2 * crop + model.mnet.stride  # the smallest window that keeps a pixel
    image = torch.rand(1, 3, side + 64, side + 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.tnet, (image,), str(folder / TNET_FILE), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": dyn, "logits": dyn},
                          opset_version=opset, dynamo=False)
        torch.onnx.export(_Cropped(model.mnet, crop), (image, torch.rand_like(image).softmax(1)),
                          str(folder / MNET_FILE), input_names=["image", "trimap_probs"],
                          output_names=["alpha_r"], opset_version=opset, dynamo=False,
                          dynamic_axes={"image": {0: "batch", **dyn},
                                        "trimap_probs": {0: "batch", **dyn},
                                        "alpha_r": {0: "batch", 2: "out_height", 3: "out_width"}})
    config = {**model.config.to_dict(), MNET_CROP: crop}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


class _Cropped(nn.Module):
    """An M-Net with its ``crop`` fixed, for export."""

    def __init__(self, mnet: nn.Module, crop: int) -> None:
        super().__init__()
        self.mnet, self.crop = mnet, crop

    def forward(self, image: torch.Tensor, trimap_probs: torch.Tensor) -> torch.Tensor:
        return self.mnet(image, trimap_probs, crop=self.crop)


class OnnxSHM:
    """The two exported graphs run by onnxruntime; offers ``trimap_logits`` and ``mnet`` like
    ``shm.models.SHM``, on (B, 3, H, W) float tensors. providers: onnxruntime's execution
    providers (``shm.inference.devices.onnx_providers``), by default the CPU's."""

    def __init__(self, folder: str | Path, threads: int = 0, providers: list | None = None
                 ) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        missing = [f for f in (TNET_FILE, MNET_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if (folder / WEIGHTS_FILE).is_file() or folder.name == WEIGHTS_FILE:
            raise FileNotFoundError(f"{folder} holds torch weights, not an ONNX export; use the "
                                    "torch backend, or export them with `shm export --weights "
                                    f"{folder} --onnx DIR`.")
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; create it with "
                                    "`shm export --onnx DIR`.")
        config = json.loads((folder / CONFIG_FILE).read_text())
        if MNET_CROP not in config:
            raise ValueError(f"{folder} was exported by an older shm; export it again with "
                             "`shm export --onnx DIR`.")
        self.mnet_crop = config[MNET_CROP]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        # no busy-waiting after a run: torch work runs between the two graphs, and idle
        # spinning threads would take the cores from it (and from the caller)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers or ["CPUExecutionProvider"]
        self._tnet = ort.InferenceSession(str(folder / TNET_FILE), opts, providers=providers)
        self._mnet = ort.InferenceSession(str(folder / MNET_FILE), opts, providers=providers)
        self.tnet_long_side = config["tnet_long_side"]
        mnet = ModelConfig.from_dict(config).mnet
        # the M-Net's context, or the exported crop where that is larger (an older export)
        self.mnet_context = max(MNETS[mnet.kind].context_for(mnet.widths), self.mnet_crop)

    def eval(self) -> OnnxSHM:
        return self

    def _run_tnet(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._tnet.run(None, {"image": _np(image)})[0])

    def trimap_logits(self, image: torch.Tensor, flip: bool = False) -> torch.Tensor:
        tnet = flip_averaged(self._run_tnet) if flip else self._run_tnet
        return tnet_at_reduced_size(tnet, image, self.tnet_long_side)

    def mnet(self, image: torch.Tensor, trimap_probs: torch.Tensor,
             crop: int = 0) -> torch.Tensor:
        """alpha_r (B, 1, H - 2 crop, W - 2 crop); crop at least the exported ``mnet_crop``."""
        if crop < self.mnet_crop:
            raise ValueError(f"This ONNX M-Net drops a {self.mnet_crop}-px margin; use tiles "
                             f"with a margin of at least {self.mnet_crop}, or export again with "
                             "a smaller one.")
        feeds = {"image": _np(image), "trimap_probs": _np(trimap_probs)}
        return crop_border(torch.from_numpy(self._mnet.run(None, feeds)[0]), crop - self.mnet_crop)


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
