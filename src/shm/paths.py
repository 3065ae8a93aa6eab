"""Default locations, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """Training data: ``$SHM_DATA`` if set, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("SHM_DATA", "../shared/data"))


def default_cache_dir() -> Path:
    """Caches (recovered foregrounds, editor sessions): ``$SHM_CACHE`` or ``~/.cache/shm``."""
    return Path(os.environ.get("SHM_CACHE", Path.home() / ".cache" / "shm"))
