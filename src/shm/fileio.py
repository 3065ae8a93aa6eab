"""Atomic file writes: a temporary file in the same folder, then a rename.

The temporary file of ``folder/NAME`` is ``folder/.NAME.shm-XXXXXXXX.tmp`` (8 random letters,
digits or underscores), a name only this program makes, so what a killed run leaves behind
can be found (``stale_temp_files``) without touching anybody else's ``*.tmp`` files.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_MARK = "shm-"  # between the target's name and mkstemp's 8 random characters
_TEMP = re.compile(rf"\.(?P<name>.+)\.{TEMP_MARK}[a-z0-9_]{{8}}\.tmp")


def atomic_write(path: str | Path, write: Callable[[str], None], overwrite: bool = True,
                 mode: int | None = None) -> None:
    """Call ``write(tmp_path)`` then rename the result onto ``path``, so readers never see half a
    file. The file gets ``mode``, by default the usual permissions (0666 less the umask). Raises
    FileExistsError if ``path`` exists and not ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_MARK}", suffix=".tmp")
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


def stale_temp_files(targets: set[Path]) -> list[Path]:
    """The temporary files ``atomic_write`` left beside any of ``targets`` (a write killed
    half-way): only names of the form ``.NAME.shm-XXXXXXXX.tmp`` whose NAME is a target's."""
    names: dict[Path, set[str]] = {}
    for target in targets:
        names.setdefault(target.parent, set()).add(target.name)
    found = []
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no such folder yet, or unreadable: nothing of ours there
            continue
        for entry in entries:
            match = _TEMP.fullmatch(entry.name)
            if match and match["name"] in wanted and entry.is_file(follow_symlinks=False):
                found.append(folder / entry.name)
    return sorted(found)
