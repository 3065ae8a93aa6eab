"""Finding the input photos that folders and globs name, safely on any tree of folders.

Links to folders are followed, but never into a folder already on the way down (a link such as
``ln -s . in/self`` would loop forever) nor twice into the same folder: each such link is
skipped and reported, as is a folder that cannot be read. Folders are searched recursively;
a glob's ``**`` matches any number of folders, as in ``glob.glob(recursive=True)``.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from shm.inference.images import IMAGE_SUFFIXES

MAGIC = frozenset("*?[")


@dataclass
class Found:
    """files: (path, its name relative to the output folder), each file once, in order;
    missing: the inputs that named nothing; skipped: (folder or link, why) for every folder
    left out (a looping or repeated link, an unreadable folder)."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def walk(folder: Path, exclude: Path | None = None, depth: int | None = None,
         skipped: list[tuple[str, str]] | None = None, hidden: bool = True) -> list[Path]:
    """Every file under ``folder`` (recursive, links to folders followed, sorted by path),
    at most ``depth`` folders down (None: any), leaving out the folder ``exclude`` and, unless
    ``hidden``, folders whose names start with a dot.

    Looping or repeated links and unreadable folders are left out and appended to ``skipped``
    as (path, reason).
    """
    skip_id = _identity(exclude) if exclude is not None else None
    root_id = _identity(folder)
    if root_id is None:
        return []
    notes = [] if skipped is None else skipped
    seen = {root_id: folder}
    files: list[Path] = []
    stack: list[tuple[Path, tuple[tuple[tuple[int, int], Path], ...], int]] = [
        (folder, ((root_id, folder),), 0)]
    while stack:
        here, above, level = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name, reverse=True)
        except OSError as e:
            notes.append((str(here), f"cannot be read ({e.strerror or e})"))
            continue
        for entry in entries:
            path = here / entry.name
            if _is_dir(entry):
                ident = _identity(path)
                if (ident is None or ident == skip_id or (depth is not None and level >= depth)
                        or (not hidden and entry.name.startswith("."))):
                    continue
                loop = next((p for i, p in above if i == ident), None)
                if loop is not None:
                    notes.append((str(path), f"a link back to {loop}, which would loop"))
                elif ident in seen:
                    notes.append((str(path), f"the same folder as {seen[ident]}, searched "
                                  "already"))
                else:
                    seen[ident] = path
                    stack.append((path, (*above, (ident, path)), level + 1))
            elif _is_file(entry):
                files.append(path)
    return sorted(files)


def find_images(folder: Path, exclude: Path | None = None,
                skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Image files (by suffix) under ``folder``, as ``walk`` finds them; ``exclude`` is left out
    where it is a folder inside ``folder`` (an output folder placed in the input folder)."""
    return [p for p in walk(folder, exclude, skipped=skipped) if p.suffix.lower() in IMAGE_SUFFIXES]


def expand(inputs: list[str], output: Path) -> Found:
    """The photos that ``inputs`` name: files as they are, folders searched recursively (image
    files only, named relative to the folder), globs expanded (any file that matches, named by
    its own name); nothing inside the ``output`` folder, and each file once."""
    found = Found()
    out = output.resolve()
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            found.files += [(p, p.relative_to(path))
                            for p in find_images(path, exclude=output, skipped=found.skipped)]
        elif path.is_file():
            found.files.append((path, Path(path.name)))
        else:
            matches = glob(spec, found.skipped)
            found.files += [(m, Path(m.name)) for m in matches if not m.resolve().is_relative_to(out)]
            if not matches:
                found.missing.append(spec)
    unique: dict[Path, tuple[Path, Path]] = {}
    for p, rel in found.files:
        unique.setdefault(p.resolve(), (p, rel))
    found.files = list(unique.values())
    return found


def glob(pattern: str, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """The files matching ``pattern`` (``*``, ``?``, ``[...]`` within a name, ``**`` across
    folders; names starting with a dot only where the pattern's part does too), sorted.

    Like ``glob.glob(pattern, recursive=True)`` restricted to files, but walked with ``walk``,
    so a looping link is skipped (and appended to ``skipped``) instead of followed forever.
    """
    parts = Path(pattern).parts
    fixed = next((i for i, p in enumerate(parts) if MAGIC & set(p)), len(parts))
    root, pats = Path(*parts[:fixed]) if fixed else Path("."), parts[fixed:]
    if not pats:
        return [root] if root.is_file() else []
    depth = None if "**" in pats else len(pats) - 1
    hidden = any(p.startswith(".") for p in pats)
    return [p for p in walk(root, depth=depth, skipped=skipped, hidden=hidden)
            if _match(p.relative_to(root).parts, pats)]


def _match(names: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    """Whether the path components ``names`` match the glob components ``pats``."""
    if not pats:
        return not names
    if pats[0] == "**":
        return any(_match(names[i:], pats[1:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))
    return (bool(names) and fnmatch.fnmatch(names[0], pats[0])
            and (pats[0].startswith(".") or not names[0].startswith("."))
            and _match(names[1:], pats[1:]))


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder at ``path`` (links followed), or None if it is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
