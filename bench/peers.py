"""Other projects' models from ../shared/peers, wrapped for side-by-side benchmarks only.

Each wrapper maps an (H, W, 3) uint8 RGB image to an (H, W) float32 alpha in [0, 1].
They are never part of shm; they read the peer files where they lie.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers"


def onnx_session(path: Path):
    """An onnxruntime CPU session on 2 threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class MediaPipeSelfie:
    name = "MediaPipe selfie"

    def __init__(self, path: Path = PEERS / "selfie_segmentation.tflite") -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.net = Interpreter(model_path=str(path), num_threads=2)
        self.net.allocate_tensors()
        self.inp = self.net.get_input_details()[0]["index"]
        self.out = self.net.get_output_details()[0]["index"]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        self.net.set_tensor(self.inp, x[None])
        self.net.invoke()
        prob = self.net.get_tensor(self.out)[0, :, :, 0]
        h, w = image.shape[:2]
        return np.clip(cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)


class RVM:
    name = "RVM (MobileNetV3)"

    def __init__(self, path: Path = PEERS / "rvm_mobilenetv3.onnx") -> None:
        self.net = onnx_session(path)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        zero = np.zeros((), np.float32)
        feeds = {"src:0": image[None].astype(np.float32) / 255, "r1i:0": zero, "r2i:0": zero,
                 "r3i:0": zero, "r4i:0": zero,
                 "downsample_ratio:0": np.array(min(1.0, 512 / max(h, w)), np.float32)}
        alpha = self.net.run(["Identity_1:0"], feeds)[0]
        return np.clip(alpha[0, :, :, 0], 0, 1)


class U2Netp:
    name = "U2-Netp"

    def __init__(self, path: Path = PEERS / "u2netp.onnx") -> None:
        self.net = onnx_session(path)
        self.input = self.net.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        out = self.net.run(None, {self.input: x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
        pred = out[0, 0]
        pred = (pred - pred.min()) / max(pred.max() - pred.min(), 1e-8)
        h, w = image.shape[:2]
        return np.clip(cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
