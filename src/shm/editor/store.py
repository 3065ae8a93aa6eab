"""Editing sessions kept on disk under the data dir, with a small in-memory cache.

Layout: ``DATA_DIR/sessions/<id>/`` holds ``image.png`` (the decoded upload), ``meta.json`` (file
name, size, creation time, the list of edits and how many are in effect) and, once the session
has left the cache or the server has stopped, ``state.safetensors`` (its canvas and undo history,
so coming back costs one file read however many edits it holds; without a current one, e.g.
after a crash, the edits are replayed). A new session is written in ``DATA_DIR/incoming/`` and
renamed into place whole, so no request and no cleanup ever sees half of one. Folders are 0700
and files 0600: only the server's user can read the photos.

Sessions expire ``ttl`` seconds after their last use (the mtime of ``meta.json``, touched on
every access); the least recently used go first when the store exceeds ``max_bytes``. The undo
history of each cached session is bounded by ``history_bytes``, and by ``server_history_bytes``
split over the ``cache_size`` cached sessions.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from shm.editor.session import DEFAULT_HISTORY_BYTES, EditError, EditSession
from shm.fileio import atomic_write, write_bytes_atomic
from shm.inference.images import load_image
from shm.inference.predictor import Matter

# what a download's name may not hold: control characters, path separators, characters Windows
# or a Content-Disposition header cannot take; letters and emoji of any script stay
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f"*/:<>?\\|]+')
_FORM_ESCAPES = re.compile(r"%(22|0[ad])", re.IGNORECASE)
_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)
STALE_INCOMING = 3600.0  # seconds after which an unfinished upload folder is removed


class UnknownSession(KeyError):
    """No session with this id (never created, or expired)."""


@dataclass
class _Entry:
    session: EditSession
    serial: int         # meta.json's "serial" that the session's state matches
    snapshotted: bool   # state.safetensors holds this serial


class SessionStore:
    def __init__(self, matter: Matter, data_dir: str | Path, ttl: float = 24 * 3600,
                 max_bytes: int = 2 * 1024**3, cache_size: int = 4,
                 history_bytes: int = DEFAULT_HISTORY_BYTES,
                 server_history_bytes: int = 2 * DEFAULT_HISTORY_BYTES) -> None:
        self.matter = matter
        self.root = _private_dir(Path(data_dir) / "sessions")
        self.incoming = _private_dir(Path(data_dir) / "incoming")
        self.ttl, self.max_bytes, self.cache_size = ttl, max_bytes, cache_size
        self.history_bytes = min(history_bytes, server_history_bytes // cache_size)
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        # one lock per session in use; an entry lives only while someone holds its lock
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._cleaning = threading.Lock()

    def create(self, image: bytes | np.ndarray, filename: str | None) -> tuple[str, EditSession]:
        """Decode an upload (raises ImageError), compute the automatic result, store it."""
        image = load_image(image, self.matter.max_pixels)
        session = EditSession(self.matter, image, self.history_bytes)
        self.cleanup()
        sid = secrets.token_urlsafe(16)
        staging = self.incoming / sid
        staging.mkdir(mode=0o700)
        try:
            with open(os.open(staging / "image.png", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                      "wb") as f:
                Image.fromarray(image).save(f, "PNG", compress_level=1)
            stem = download_stem(filename)
            self._write_meta(staging, {"name": stem, "width": session.width,
                                       "height": session.height, "created": time.time(),
                                       "ops": [], "version": 0, "base": 0, "serial": 0})
            os.rename(staging, self.root / sid)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._remember(sid, _Entry(session, 0, False))
        return sid, session

    def lock(self, sid: str) -> threading.Lock:
        """The lock to hold while using session ``sid``. Raises UnknownSession."""
        self._folder(sid)
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def meta(self, sid: str) -> dict:
        """The session's meta.json (this counts as a use). Raises UnknownSession."""
        path = self._folder(sid) / "meta.json"
        try:
            meta = json.loads(path.read_text())
            os.utime(path)
        except FileNotFoundError:  # removed meanwhile
            raise UnknownSession(sid) from None
        return meta

    def get(self, sid: str) -> EditSession:
        """The live session (restored from disk if needed); hold ``lock(sid)`` while using it.
        Raises UnknownSession."""
        meta = self.meta(sid)
        with self._guard:
            if sid in self._cache:
                self._cache.move_to_end(sid)
                return self._cache[sid].session
        folder = self._folder(sid)
        try:
            image = np.asarray(Image.open(folder / "image.png").convert("RGB"))
        except FileNotFoundError:
            raise UnknownSession(sid) from None
        session, snapshotted = self._restore(folder, image, meta), True
        if session is None:
            session, snapshotted = self._replay(image, meta), False
            if session.ops != meta["ops"] or session.base != meta.get("base", 0):
                self.save(sid, session)
                meta = self.meta(sid)
        self._remember(sid, _Entry(session, meta.get("serial", 0), snapshotted))
        return session

    def save(self, sid: str, session: EditSession) -> None:
        """Persist the session's edits and position in its history (hold ``lock(sid)``)."""
        folder = self._folder(sid)
        meta = json.loads((folder / "meta.json").read_text())
        serial = meta.get("serial", 0) + 1
        meta.update(ops=session.ops, version=session.version, base=session.base, serial=serial)
        self._write_meta(folder, meta)
        with self._guard:
            if sid in self._cache:
                self._cache[sid] = _Entry(session, serial, False)

    def close(self) -> None:
        """Snapshot every cached session, so the next start restores them without the model."""
        for sid in list(self._cache):
            try:
                lock = self.lock(sid)
            except UnknownSession:
                continue
            if lock.acquire(timeout=30):
                try:
                    self._snapshot(sid)
                finally:
                    lock.release()

    def cleanup(self) -> None:
        """Remove sessions unused for ``ttl`` seconds, then the least recently used while over
        ``max_bytes``, and uploads left unfinished. Sessions in use are left alone."""
        if not self._cleaning.acquire(blocking=False):
            return  # another request is cleaning up
        try:
            now = time.time()
            for folder in self.incoming.iterdir():
                if now - _mtime(folder) > STALE_INCOMING:
                    shutil.rmtree(folder, ignore_errors=True)
            entries = []
            for folder in self.root.iterdir():
                try:
                    used = (folder / "meta.json").stat().st_mtime
                    size = sum(f.stat().st_size for f in folder.iterdir())
                except OSError:  # not a session folder, or removed meanwhile
                    continue
                entries.append((used, size, folder))
            entries.sort()
            total = sum(size for _, size, _ in entries)
            for used, size, folder in entries:
                if (now - used > self.ttl or total > self.max_bytes) and self._remove(folder.name):
                    total -= size
        finally:
            self._cleaning.release()

    def _remove(self, sid: str) -> bool:
        try:
            lock = self.lock(sid)
        except UnknownSession:
            return False
        if not lock.acquire(blocking=False):
            return False  # in use
        try:
            with self._guard:
                self._cache.pop(sid, None)
            trash = self.incoming / f".removed-{sid}"
            try:
                os.rename(self.root / sid, trash)  # atomically out of sight, then deleted
            except OSError:  # removed meanwhile (another server on the same data dir)
                return False
            shutil.rmtree(trash, ignore_errors=True)
            return True
        finally:
            lock.release()

    def _folder(self, sid: str) -> Path:
        # The id must look like one we issued, so it cannot name any other path.
        folder = self.root / sid
        if not _ID.fullmatch(sid) or not folder.is_dir():
            raise UnknownSession(sid)
        return folder

    def _restore(self, folder: Path, image: np.ndarray, meta: dict) -> EditSession | None:
        """The session from state.safetensors, or None if it is missing or not current."""
        path = folder / "state.safetensors"
        try:
            with safe_open(path, "pt") as f:
                info = f.metadata()
            if int(info.get("serial", -1)) != meta.get("serial", 0):
                return None
            return EditSession(self.matter, image, self.history_bytes,
                               state=(load_file(path), info))
        except (OSError, ValueError, KeyError, SafetensorError):  # damaged: replay instead
            return None

    def _replay(self, image: np.ndarray, meta: dict) -> EditSession:
        session = EditSession(self.matter, image, self.history_bytes)
        try:
            session.replay(meta["ops"], meta["version"])
        except EditError:  # the history budget cannot reach back: give up the redo steps
            session = EditSession(self.matter, image, self.history_bytes)
            session.replay(meta["ops"][:meta["version"]], meta["version"])
        return session

    def _snapshot(self, sid: str) -> None:
        """Write state.safetensors for a cached session unless it is current (hold its lock)."""
        entry = self._cache.get(sid)
        if entry is None or entry.snapshotted:
            return
        tensors, info = entry.session.state()
        info["serial"] = str(entry.serial)
        try:
            atomic_write(self._folder(sid) / "state.safetensors",
                         lambda tmp: save_file(tensors, tmp, metadata=info), mode=0o600)
        except UnknownSession:
            return
        entry.snapshotted = True

    def _remember(self, sid: str, entry: _Entry) -> None:
        """Cache a session; the least recently used ones not in use leave the cache, with a
        snapshot on disk."""
        with self._guard:
            self._cache[sid] = entry
            self._cache.move_to_end(sid)
            extra = len(self._cache) - self.cache_size
            oldest = list(self._cache)[:max(0, extra)]
        for old in oldest:
            lock = self._try_lock(old)
            if lock is None or not lock.acquire(blocking=False):
                continue  # in use: it leaves the cache on a later call
            try:
                self._snapshot(old)
                with self._guard:
                    self._cache.pop(old, None)
            finally:
                lock.release()

    def _try_lock(self, sid: str) -> threading.Lock | None:
        try:
            return self.lock(sid)
        except UnknownSession:
            with self._guard:
                self._cache.pop(sid, None)
            return None

    @staticmethod
    def _write_meta(folder: Path, meta: dict) -> None:
        write_bytes_atomic(folder / "meta.json", json.dumps(meta).encode(), overwrite=True,
                           mode=0o600)


def download_stem(filename: str | None) -> str:
    """The name downloads of an upload are called after: the stem of the file name's last part
    ('фото 😀.jpg' -> 'фото 😀'), unsafe characters (``_UNSAFE_NAME``) as '_', runs of white
    space as one space, at most 64 characters, 'image' if nothing is left. Browsers send '"',
    CR and LF in a form's file name as %22, %0D and %0A (HTML's multipart encoding): those
    count as the characters."""
    name = _FORM_ESCAPES.sub(lambda m: chr(int(m[1], 16)), filename or "")
    stem = Path(re.split(r"[/\\]", name)[-1]).stem
    return " ".join(_UNSAFE_NAME.sub("_", stem).split())[:64].strip(" ._") or "image"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
