"""Editing sessions kept on disk under the data dir, with a small in-memory cache.

Layout: ``DATA_DIR/sessions/<id>/image.png`` (the decoded upload) and ``meta.json`` (file name,
size, creation time, the list of edits and how many are in effect). A session evicted from
memory, or lost in a restart, is rebuilt by replaying its edits. Sessions expire after ``ttl``
seconds, and the oldest are removed when the store exceeds ``max_bytes``.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from shm.editor.session import EditSession
from shm.fileio import write_bytes_atomic
from shm.inference.images import load_image
from shm.inference.predictor import Matter

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class UnknownSession(KeyError):
    """No session with this id (never created, or expired)."""


class SessionStore:
    def __init__(self, matter: Matter, data_dir: str | Path, ttl: float = 24 * 3600,
                 max_bytes: int = 2 * 1024**3, cache_size: int = 4) -> None:
        self.matter = matter
        self.root = Path(data_dir) / "sessions"
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl, self.max_bytes, self.cache_size = ttl, max_bytes, cache_size
        self._cache: OrderedDict[str, EditSession] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def create(self, data: bytes, filename: str | None) -> tuple[str, EditSession]:
        """Decode an upload (raises ImageError), compute the automatic result, store it."""
        image = load_image(data, self.matter.max_pixels)
        session = EditSession(self.matter, image)
        self.cleanup()
        sid = secrets.token_urlsafe(16)
        folder = self.root / sid
        folder.mkdir()
        Image.fromarray(image).save(folder / "image.png", compress_level=1)
        stem = _SAFE_NAME.sub("_", Path(filename or "image").stem)[:64].strip("._") or "image"
        self._write_meta(folder, {"name": stem, "width": session.width, "height": session.height,
                                  "created": time.time(), "ops": [], "version": 0})
        self._remember(sid, session)
        return sid, session

    def lock(self, sid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def meta(self, sid: str) -> dict:
        return json.loads((self._folder(sid) / "meta.json").read_text())

    def get(self, sid: str) -> EditSession:
        """The live session (rebuilt from disk if needed). Raises UnknownSession."""
        folder = self._folder(sid)
        with self._guard:
            if sid in self._cache:
                self._cache.move_to_end(sid)
                return self._cache[sid]
        meta = json.loads((folder / "meta.json").read_text())
        image = np.asarray(Image.open(folder / "image.png").convert("RGB"))
        session = EditSession(self.matter, image)
        session.replay(meta["ops"], meta["version"])
        self._remember(sid, session)
        return session

    def save(self, sid: str, session: EditSession) -> None:
        """Persist the session's edits and position in its history."""
        folder = self._folder(sid)
        meta = json.loads((folder / "meta.json").read_text())
        meta.update(ops=session.ops, version=session.version)
        self._write_meta(folder, meta)

    def cleanup(self) -> None:
        """Remove expired sessions, then the oldest ones while over ``max_bytes``."""
        now = time.time()
        entries = []
        for folder in self.root.iterdir():
            try:
                created = json.loads((folder / "meta.json").read_text())["created"]
            except (OSError, ValueError, KeyError):
                created = 0.0
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            entries.append((created, size, folder))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        for created, size, folder in entries:
            if now - created > self.ttl or total > self.max_bytes:
                self._forget(folder.name)
                shutil.rmtree(folder, ignore_errors=True)
                total -= size

    def _folder(self, sid: str) -> Path:
        # The path comes from the directory listing, never from the id the client sent.
        found = next((p for p in self.root.iterdir() if p.name == sid and p.is_dir()), None)
        if found is None:
            raise UnknownSession(sid)
        return found

    def _remember(self, sid: str, session: EditSession) -> None:
        with self._guard:
            self._cache[sid] = session
            self._cache.move_to_end(sid)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _forget(self, sid: str) -> None:
        with self._guard:
            self._cache.pop(sid, None)
            self._locks.pop(sid, None)

    @staticmethod
    def _write_meta(folder: Path, meta: dict) -> None:
        write_bytes_atomic(folder / "meta.json", json.dumps(meta).encode(), overwrite=True)
