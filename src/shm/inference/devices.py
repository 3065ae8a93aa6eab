"""Where inference runs (CPU, a CUDA GPU or Apple's MPS) and in which precision.

The tiled canvas (``shm.inference.tiles``) always stays in CPU memory as float32, so the
fusion ``F_s + U_s * alpha_r`` and every output are float32 whatever the device; only the
two networks run on the device, each call's input copied there and its output copied back.
"""

from __future__ import annotations

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_device(name: str) -> tuple[str, int | None]:
    """(kind, GPU index or None) of a device name: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.
    Raises ValueError, with one sentence, for any other name."""
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"Unknown device {name!r}; choose auto, cpu, cuda (or cuda:N) or mps.")
    return kind, int(index) if index else None


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device that ``name`` means: 'auto' is the first CUDA GPU if there is one, else
    Apple's MPS if available, else the CPU; 'cuda:N' is GPU N. Raises ValueError, with one
    sentence, for an unknown name or a device this machine does not have."""
    kind, index = parse_device(name)
    if kind == "auto":
        kind = ("cuda" if torch.cuda.is_available()
                else "mps" if torch.backends.mps.is_available() else "cpu")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"Device {name!r} is not available: this torch "
                             f"({torch.__version__}) finds no CUDA GPU; use cpu or auto.")
        if (index or 0) >= count:
            raise ValueError(f"Device {name!r} is not available: this machine has {count} CUDA "
                             f"GPU(s), cuda:0 to cuda:{count - 1}.")
        return torch.device("cuda", index or 0)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device {name!r} is not available: Apple's MPS needs a Mac with "
                         "Apple silicon and a torch built for it; use cpu or auto.")
    return torch.device(kind)


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype the networks run in: 'auto' is float16 on a CUDA GPU (10-bit mantissa: 8x
    finer than bfloat16, and a call whose output overflows is rerun in float32) and float32
    on the CPU and MPS. 'fp16' works on CUDA and MPS, 'bf16' on the CPU and on CUDA GPUs that
    support it. Raises ValueError, with one sentence, for any other combination."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = DTYPES[precision]
    supported = {"cpu": (torch.float32, torch.bfloat16), "mps": (torch.float32, torch.float16),
                 "cuda": (torch.float32, torch.float16)
                 + ((torch.bfloat16,) if device.type == "cuda" and torch.cuda.is_bf16_supported()
                    else ())}
    if dtype not in supported.get(device.type, (torch.float32,)):
        raise ValueError(f"Precision {precision} is not supported on {device.type}; use fp32 or "
                         "auto.")
    return dtype


class OnDevice:
    """An SHM model's T-Net and M-Net run on ``device`` in ``dtype`` (autocast: convolutions in
    ``dtype``, reductions in float32), offering ``trimap_logits`` and ``mnet`` like
    ``shm.models.SHM`` on float32 CPU tensors: inputs are copied to the device, outputs come
    back as float32 on the CPU. A half-precision call whose output is not finite everywhere is
    rerun in float32, so an overflow can cost time but never a result."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.module = model.to(device).eval()
        self.device, self.dtype = device, dtype
        self.config = getattr(model, "config", None)
        self.tnet_long_side = model.tnet_long_side

    @property
    def mnet_context(self) -> int:
        return self.module.mnet_context

    def eval(self) -> OnDevice:
        return self

    def trimap_logits(self, image: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) float32 logits, as ``SHM.trimap_logits``: the
        T-Net in ``dtype``; resizing and the mirror average in float32 on the device."""
        from shm.models.shm import flip_averaged, tnet_at_reduced_size

        tnet = flip_averaged(self._tnet) if flip else self._tnet
        return tnet_at_reduced_size(tnet, image.to(self.device), self.tnet_long_side).float().cpu()

    def mnet(self, image: torch.Tensor, trimap_probs: torch.Tensor, crop: int = 0) -> torch.Tensor:
        """alpha_r (B, 1, H - 2 crop, W - 2 crop) float32 on the CPU, as ``SHM.mnet``."""
        return self._run(self.module.mnet, image.to(self.device), trimap_probs.to(self.device),
                         crop=crop).cpu()

    def _tnet(self, image: torch.Tensor) -> torch.Tensor:
        return self._run(self.module.tnet, image)

    def _run(self, net: nn.Module, *args: torch.Tensor, **kwargs) -> torch.Tensor:
        """``net(*args, **kwargs)`` under autocast to ``dtype``, as float32; again in float32
        if a half-precision output is not finite everywhere."""
        if self.dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.dtype):
                out = net(*args, **kwargs).float()
            if bool(torch.isfinite(out).all()):
                return out
        return net(*args, **kwargs).float()


def onnx_providers(name: str = "auto", precision: str = "auto") -> list:
    """onnxruntime execution providers for device ``name``: CUDA (then the CPU for what it
    lacks) for 'cuda' or 'cuda:N', and for 'auto' where this onnxruntime has the CUDA provider;
    else the CPU. Raises ValueError, with one sentence, for an unknown name, for 'mps', for
    'cuda' without the CUDA provider and for a precision other than auto or fp32."""
    import onnxruntime as ort

    if precision not in ("auto", "fp32"):
        raise ValueError(f"The onnx backend runs in fp32 only, not {precision}; use the torch "
                         "backend for half precision.")

    kind, index = parse_device(name)
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if kind == "mps":
        raise ValueError("The onnx backend runs on the CPU or a CUDA GPU, not on mps; use the "
                         "torch backend for mps.")
    if kind == "cuda" and not has_cuda:
        raise ValueError(f"Device {name!r} is not available to the onnx backend: this "
                         "onnxruntime has no CUDA provider (install onnxruntime-gpu); use the "
                         "torch backend or cpu.")
    if kind in ("auto", "cuda") and has_cuda:
        return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
