"""The editor server under concurrency, hostile requests and odd inputs (issue 14)."""

import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shm.editor.app import create_app
from shm.editor.session import EditError, EditSession
from shm.editor.store import SessionStore, UnknownSession
from shm.inference.predictor import load_model
from shm.inference.tiles import TileConfig
from tests.test_editor_api import _photo

BASE = "http://127.0.0.1"


@pytest.fixture
def matter(tiny_weights):
    return load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16), max_pixels=400_000)


def _client(matter, tmp_path, **kwargs) -> TestClient:
    kwargs.setdefault("data_dir", tmp_path / "store")
    return TestClient(create_app(matter, **kwargs), base_url=BASE)


def _upload(client, data=None):
    return client.post("/api/v1/sessions", files={"image": ("x.png", data or _photo(), "image/png")})


STROKE = {"tool": "erase", "size": 9, "points": [[10, 10], [30, 40]]}


def test_parallel_uploads_keep_every_session(matter, tmp_path):
    """16 uploads at once, then a stroke on each (most are out of the 4-slot cache) and again
    after a restart: every session is whole."""
    photo = _photo(400, 360)
    with _client(matter, tmp_path, workers=8, max_pending=32, max_upload_mb=4) as client:
        with ThreadPoolExecutor(16) as pool:
            made = list(pool.map(lambda _: _upload(client, photo), range(16)))
        assert [r.status_code for r in made] == [201] * 16, [r.text for r in made]
        ids = [r.json()["id"] for r in made]
        with ThreadPoolExecutor(16) as pool:
            strokes = list(pool.map(
                lambda sid: client.post(f"/api/v1/sessions/{sid}/strokes", json=STROKE), ids))
        assert [r.status_code for r in strokes] == [200] * 16, [r.text for r in strokes]
    with _client(matter, tmp_path) as fresh:
        for sid in ids:
            res = fresh.post(f"/api/v1/sessions/{sid}/undo")
            assert res.status_code == 200 and res.json()["version"] == 0, res.text


def _stroke(client, sid, body=None):
    return client.post(f"/api/v1/sessions/{sid}/strokes", json=body or STROKE)


def _alpha(client, sid):
    res = client.get(f"/api/v1/sessions/{sid}/alpha.png")
    assert res.status_code == 200, res.text
    return np.asarray(Image.open(io.BytesIO(res.content)))


def test_unknown_ids_leave_no_lock_behind(matter, tmp_path):
    store = SessionStore(matter, tmp_path)
    for i in range(50):
        with pytest.raises(UnknownSession):
            store.lock(f"nope-{i}")
    sid, _ = store.create(_photo(), "a.png")
    with store.lock(sid):
        assert len(store._locks) == 1
    assert len(store._locks) == 0  # entries live only while a lock is held


def test_photos_are_private(matter, tmp_path):
    with _client(matter, tmp_path) as client:
        sid = _upload(client).json()["id"]
    folder = tmp_path / "store" / "sessions" / sid
    for path in (tmp_path / "store" / "sessions", folder):
        assert path.stat().st_mode & 0o777 == 0o700, path
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["image.png", "meta.json", "state.safetensors"]
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_sessions_expire_after_last_use(matter, tmp_path):
    store = SessionStore(matter, tmp_path, ttl=3600)
    used, idle = (store.create(_photo(), "a.png")[0] for _ in range(2))
    old = time.time() - 7200
    for sid in (used, idle):  # both created and last used two hours ago
        meta = store.root / sid / "meta.json"
        meta.write_text(json.dumps(dict(json.loads(meta.read_text()), created=old)))
        os.utime(meta, (old, old))
    store.meta(used)
    store.cleanup()
    assert (store.root / used).is_dir() and not (store.root / idle).exists()


def test_undo_history_stays_within_its_budget(matter, tmp_path):
    """10 parallel stroke streams on one session: the history keeps within history_mb by
    dropping the oldest steps, and says so when undo reaches them."""
    with _client(matter, tmp_path, history_mb=0.5) as client:
        sid = _upload(client).json()["id"]
        points = [[[5 + 7 * i, 5], [5 + 7 * i, 90]] for i in range(10)]
        with ThreadPoolExecutor(10) as pool:
            done = list(pool.map(lambda i: [
                _stroke(client, sid, {"tool": "keep", "size": 4, "points": points[i]}).status_code
                for _ in range(4)], range(10)))
        assert done == [[200] * 4] * 10
        info = client.get(f"/api/v1/sessions/{sid}").json()
        assert info["version"] == 40
        undone = 0
        while (res := client.post(f"/api/v1/sessions/{sid}/undo")).status_code == 200:
            undone += 1
        assert 1 <= undone < 10
        assert res.status_code == 409 and "dropped" in res.json()["error"]


def test_history_budget_in_the_session(matter):
    session = EditSession(matter, np.asarray(Image.open(io.BytesIO(_photo()))), history_bytes=1_000_000)
    for i in range(12):
        session.stroke("erase", 6, [[5 + 6 * i, 10], [5 + 6 * i, 80]])
        assert 0 < session.history_nbytes() <= 1_000_000
    assert session.version == 12 and session.base > 0
    while session.version > session.base:
        session.undo()
    with pytest.raises(EditError, match="dropped"):
        session.undo()
    with pytest.raises(EditError, match="Reset is not available"):
        session.reset()


def _counting(matter):
    calls = {"canvas": 0, "refine": 0}
    for name in calls:
        method = getattr(matter, name)

        def counted(*args, _name=name, _method=method, **kwargs):
            calls[_name] += 1
            return _method(*args, **kwargs)
        setattr(matter, name, counted)
    return calls


def test_sessions_come_back_without_replaying_edits(matter, tiny_weights, tmp_path):
    """A session that left the cache, or outlived a restart, is restored from its snapshot:
    no model call, however many edits it holds, and undo/redo still work."""
    with _client(matter, tmp_path) as client:
        sid = _upload(client).json()["id"]
        for i in range(8):
            assert _stroke(client, sid, {"tool": "keep" if i % 2 else "erase", "size": 7,
                                         "points": [[8 * i + 4, 8], [8 * i + 4, 88]]}
                           ).status_code == 200
        before_last = _alpha(client, sid)  # checked below against an undo
        assert _stroke(client, sid, {"tool": "erase", "size": 30, "points": [[40, 48]]}
                       ).status_code == 200
        last = _alpha(client, sid)
        for _ in range(4):
            _upload(client)  # pushes the session out of the 4-slot cache
        calls = _counting(matter)
        assert client.post(f"/api/v1/sessions/{sid}/undo").json()["version"] == 8
        assert calls == {"canvas": 0, "refine": 0}
        assert np.array_equal(_alpha(client, sid), before_last)
        assert client.post(f"/api/v1/sessions/{sid}/redo").json()["version"] == 9
    fresh_matter = load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16))
    calls = _counting(fresh_matter)
    with _client(fresh_matter, tmp_path) as fresh:
        assert np.array_equal(_alpha(fresh, sid), last)
        assert fresh.post(f"/api/v1/sessions/{sid}/undo").json()["version"] == 8
        assert np.array_equal(_alpha(fresh, sid), before_last)
    assert calls == {"canvas": 0, "refine": 0}
