"""Atomic file writes: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None], overwrite: bool = True,
                 mode: int | None = None) -> None:
    """Call ``write(tmp_path)`` then rename the result onto ``path``, so readers never see half a
    file. The file gets ``mode``, by default the usual permissions (0666 less the umask). Raises
    FileExistsError if ``path`` exists and not ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = False,
                       mode: int | None = None) -> None:
    """``atomic_write`` of a byte string."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite, mode)
