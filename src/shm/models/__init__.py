"""Network parts (plain nn.Modules); build whole models with ``shm.config.build_model``."""

from shm.models.fusion import fuse
from shm.models.shm import SHM

__all__ = ["SHM", "fuse"]
