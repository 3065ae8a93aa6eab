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
from shm.models.mnet import MNETS
from shm.models.shm import flip_averaged, tnet_at_reduced_size
from shm.pretrained import CONFIG_FILE

TNET_FILE, MNET_FILE = "tnet.onnx", "mnet.onnx"


def export_onnx(model: nn.Module, folder: str | Path, opset: int = 17) -> Path:
    """Write ``tnet.onnx`` (image (1, 3, H, W) -> logits), ``mnet.onnx`` (image, trimap_probs
    (1, 3, H, W) -> alpha_r (1, 1, H, W)) and ``config.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dyn = {2: "height", 3: "width"}
    image = torch.rand(1, 3, 256, 192)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.tnet, (image,), str(folder / TNET_FILE), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": dyn, "logits": dyn},
                          opset_version=opset, dynamo=False)
        torch.onnx.export(model.mnet, (image, torch.rand(1, 3, 256, 192).softmax(1)),
                          str(folder / MNET_FILE), input_names=["image", "trimap_probs"],
                          output_names=["alpha_r"], opset_version=opset, dynamo=False,
                          dynamic_axes={"image": {0: "batch", **dyn},
                                        "trimap_probs": {0: "batch", **dyn},
                                        "alpha_r": {0: "batch", **dyn}})
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))
    return folder


class OnnxSHM:
    """The two exported graphs run by onnxruntime; offers ``trimap_logits`` and ``mnet`` like
    ``shm.models.SHM``, on (B, 3, H, W) float tensors."""

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        missing = [f for f in (TNET_FILE, MNET_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; create it with "
                                    "`shm export --onnx DIR`.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self._tnet = ort.InferenceSession(str(folder / TNET_FILE), opts, providers=providers)
        self._mnet = ort.InferenceSession(str(folder / MNET_FILE), opts, providers=providers)
        config = json.loads((folder / CONFIG_FILE).read_text())
        self.tnet_long_side = config["tnet_long_side"]
        mnet = ModelConfig.from_dict(config).mnet
        self.mnet_context = MNETS[mnet.kind].context_for(mnet.widths)

    def eval(self) -> OnnxSHM:
        return self

    def _run_tnet(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._tnet.run(None, {"image": _np(image)})[0])

    def trimap_logits(self, image: torch.Tensor, flip: bool = False) -> torch.Tensor:
        tnet = flip_averaged(self._run_tnet) if flip else self._run_tnet
        return tnet_at_reduced_size(tnet, image, self.tnet_long_side)

    def mnet(self, image: torch.Tensor, trimap_probs: torch.Tensor) -> torch.Tensor:
        feeds = {"image": _np(image), "trimap_probs": _np(trimap_probs)}
        return torch.from_numpy(self._mnet.run(None, feeds)[0])


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
