import base64
import io
from urllib.parse import unquote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shm.editor.app import create_app
from shm.inference.predictor import load_model
from shm.inference.tiles import TileConfig
from tests.conftest import person_alpha


def _photo(h=96, w=80, fmt="PNG") -> bytes:
    a = person_alpha(h, w)[..., None] / 255.0
    img = (a * np.array([230, 190, 160]) + (1 - a) * np.array([20, 60, 120])).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def client(tiny_weights, tmp_path):
    matter = load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16), max_pixels=200_000)
    app = create_app(matter, data_dir=tmp_path / "store", max_upload_mb=0.5)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _session(client, data=None, name="holiday photo.png"):
    res = client.post("/api/v1/sessions", files={"image": (name, data or _photo(), "image/png")})
    assert res.status_code == 201, res.text
    return res.json()


def _alpha(client, sid):
    res = client.get(f"/api/v1/sessions/{sid}/alpha.png")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(res.content))
    assert img.mode == "L"
    return np.asarray(img)


def test_health_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/").text
    for testid in ("upload-input", "result-canvas", "tool-keep", "tool-erase", "tool-refine",
                   "tool-select-subject", "brush-size", "undo", "redo", "reset", "view-mode",
                   "download-png", "download-alpha", "status"):
        assert f'data-testid="{testid}"' in page
    assert client.get("/static/app.js").status_code == 200
    assert "/api/v1/sessions/{sid}/strokes" in client.get("/openapi.json").json()["paths"]


def test_create_session_returns_size(client):
    made = _session(client)
    assert made["width"] == 80 and made["height"] == 96 and len(made["id"]) >= 20
    assert _alpha(client, made["id"]).shape == (96, 80)
    assert _session(client)["id"] != made["id"]


def test_keep_erase_refine_undo_redo_reset(client):
    sid = _session(client)["id"]
    auto = _alpha(client, sid)
    url = f"/api/v1/sessions/{sid}"
    res = client.post(f"{url}/strokes", json={"tool": "keep", "size": 10, "points": [[5, 5], [20, 5]]})
    assert res.status_code == 200 and res.json()["version"] == 1 and res.json()["ms"] >= 0
    kept = _alpha(client, sid)
    assert (kept[3:8, 5:20] == 255).all()
    top, left, bottom, right = res.json()["box"]  # the answer carries the changed box's alpha
    inline = np.frombuffer(base64.b64decode(res.json()["alpha"]), np.uint8)
    assert np.array_equal(inline.reshape(bottom - top, right - left), kept[top:bottom, left:right])
    raw = client.get(f"{url}/alpha.raw?top={top}&left={left}&bottom={bottom}&right={right}")
    assert raw.content == inline.tobytes() and raw.headers["x-version"] == "1"
    client.post(f"{url}/strokes", json={"tool": "erase", "size": 12, "points": [[40, 48]]})
    erased = _alpha(client, sid)
    assert (erased[45:52, 37:44] == 0).all()
    assert client.post(f"{url}/strokes", json={"tool": "refine", "size": 8, "points": [[60, 80]]}
                       ).json()["version"] == 3
    assert client.post(f"{url}/undo").json()["version"] == 2
    assert np.array_equal(_alpha(client, sid), erased)
    assert client.post(f"{url}/undo").json()["version"] == 1
    assert np.array_equal(_alpha(client, sid), kept)
    assert client.post(f"{url}/redo").json()["version"] == 2
    assert np.array_equal(_alpha(client, sid), erased)
    reset = client.post(f"{url}/reset").json()
    assert reset["version"] == 3 and reset["box"][2] > reset["box"][0]
    assert np.array_equal(_alpha(client, sid), auto)
    assert client.post(f"{url}/undo").json()["version"] == 2  # reset is an edit: undo brings
    assert np.array_equal(_alpha(client, sid), erased)          # the edits back
    assert client.post(f"{url}/redo").json()["version"] == 3
    assert np.array_equal(_alpha(client, sid), auto)


def test_select_subject_keeps_only_the_clicked_person(client):
    sid = _session(client)["id"]
    url = f"/api/v1/sessions/{sid}"
    # two hard-edged "people": forced keep strokes (the whole brush) on an erased canvas
    client.post(f"{url}/strokes", json={"tool": "erase", "size": 400, "points": [[40, 48]]})
    for x in (15, 65):
        client.post(f"{url}/strokes", json={"tool": "keep", "size": 12, "force": True,
                                            "points": [[x, 20], [x, 70]]})
    res = client.post(f"{url}/select", json={"points": [[15, 40]]})
    assert res.status_code == 200, res.text
    alpha = _alpha(client, sid)
    assert alpha[40, 15] == 255 and alpha[40, 65] == 0


def test_session_survives_a_restart(client, tiny_weights, tmp_path):
    sid = _session(client)["id"]
    client.post(f"/api/v1/sessions/{sid}/strokes", json={"tool": "erase", "size": 20, "points": [[40, 48]]})
    client.post(f"/api/v1/sessions/{sid}/strokes", json={"tool": "keep", "size": 6, "points": [[5, 5]]})
    client.post(f"/api/v1/sessions/{sid}/undo")
    before = _alpha(client, sid)
    matter = load_model(tiny_weights, tiles=TileConfig(tile=32, margin=16))
    with TestClient(create_app(matter, data_dir=tmp_path / "store"), base_url="http://127.0.0.1") as fresh:
        assert np.array_equal(_alpha(fresh, sid), before)
        info = fresh.get(f"/api/v1/sessions/{sid}").json()
        assert info["version"] == 1 and info["can_redo"] and info["name"] == "holiday photo"
        assert fresh.post(f"/api/v1/sessions/{sid}/redo").json()["version"] == 2


def test_downloads_are_named_after_the_upload(client):
    sid = _session(client)["id"]
    res = client.get(f"/api/v1/sessions/{sid}/cutout.png?download=1")
    assert 'filename="holiday photo-cutout.png"' in res.headers["content-disposition"]
    rgba = Image.open(io.BytesIO(res.content))
    assert rgba.mode == "RGBA" and rgba.size == (80, 96)
    assert np.array_equal(np.asarray(rgba)[..., 3], _alpha(client, sid))


@pytest.mark.parametrize("upload, name", [
    ("фото 😀.jpg", "фото 😀"), ("../../etc/passwd", "passwd"), ("a|b?c.png", "a_b_c"),
    ('say "hi".png', "say _hi"), ("C:\\photos\\me.jpg", "me"), ("...", "image"),
    ("a\r\nb.png", "a_b"),
])
def test_downloads_keep_any_script_and_drop_only_unsafe_characters(client, upload, name):
    sid = _session(client, name=upload)["id"]
    assert client.get(f"/api/v1/sessions/{sid}").json()["name"] == name
    header = client.get(f"/api/v1/sessions/{sid}/alpha.png?download=1").headers["content-disposition"]
    utf8 = header.split("filename*=UTF-8''")[1]
    assert unquote(utf8) == f"{name}-alpha.png"
    assert header.isascii() and header.startswith("attachment; filename=")


def test_one_shot_matte(client):
    res = client.post("/api/v1/matte", files={"image": ("a.jpg", _photo(fmt="JPEG"), "image/jpeg")})
    assert res.status_code == 200 and Image.open(io.BytesIO(res.content)).mode == "RGBA"
    res = client.post("/api/v1/matte?format=alpha", files={"image": ("a.png", _photo(), "image/png")})
    assert Image.open(io.BytesIO(res.content)).mode == "L"


@pytest.mark.parametrize("data, status, words", [
    (b"this is not an image", 415, "not an image"),
    (_photo()[:200], 422, "truncated"),
    (b"\x00" * (600 * 1024), 413, "over 0.5 MB"),
    (_photo(500, 500), 422, "over the limit"),
    (b"", 400, "empty"),
])
def test_bad_uploads_get_one_sentence(client, data, status, words):
    for url in ("/api/v1/sessions", "/api/v1/matte"):
        res = client.post(url, files={"image": ("x.png", data, "image/png")})
        assert res.status_code == status, res.text
        assert words in res.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_unknown_session_and_malformed_strokes(client):
    assert client.get("/api/v1/sessions/nope/alpha.png").status_code == 404
    assert client.post("/api/v1/sessions/../../etc/undo").status_code == 404
    res = client.post("/api/v1/sessions/nope/strokes", json={"tool": "keep", "size": 5, "points": [[1, 1]]})
    assert res.status_code == 404 and "upload the photo again" in res.json()["error"]
    sid = _session(client)["id"]
    url = f"/api/v1/sessions/{sid}/strokes"
    for body in ({"tool": "paint", "size": 5, "points": [[1, 1]]},
                 {"tool": "keep", "size": -1, "points": [[1, 1]]},
                 {"tool": "keep", "size": 5, "points": []},
                 {"tool": "keep", "size": 5, "points": [[1, 2, 3]]},
                 {"tool": "keep", "size": 5}):
        res = client.post(url, json=body)
        assert res.status_code == 422, body
        assert res.json()["error"].startswith("Malformed request")
    res = client.post(url, json={"tool": "keep", "size": 5, "points": [[-500, -500]]})
    assert res.status_code == 422 and "outside the image" in res.json()["error"]
    res = client.post(f"/api/v1/sessions/{sid}/select", json={"points": [[-5, 10]]})
    assert res.status_code == 422 and "inside the image" in res.json()["error"]
    res = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422
