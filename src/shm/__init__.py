"""shm: fully automatic human matting after Semantic Human Matting (Chen et al., 2018).

Heavy modules (torch) load on first use, so ``import shm`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Matte", "__version__", "build_model", "load_model", "remove"]

if TYPE_CHECKING:
    from shm.config import build_model
    from shm.inference.predictor import Matte, load_model, remove


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from shm.config import build_model

        return build_model
    if name in ("load_model", "remove", "Matte"):
        from shm.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'shm' has no attribute {name!r}")
