"""The editor in real headless Chromium (Debian's), driven by Playwright."""

import io
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.conftest import astronaut

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from shm.editor.app import create_app
    from shm.inference.predictor import load_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(load_model(), data_dir=tmp_path_factory.mktemp("editor"))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _alpha(base, sid):
    with urllib.request.urlopen(f"{base}/api/v1/sessions/{sid}/alpha.png") as res:
        return np.asarray(Image.open(io.BytesIO(res.read())))


def _drawn_alpha(page, x0, y, x1):
    """Largest alpha the page's result canvas shows on row y from x0 to x1 (image pixels)."""
    return page.evaluate("""([x0, y, x1]) => Math.max(...document.getElementById("result")
        .getContext("2d").getImageData(x0, y, x1 - x0, 1).data.filter((_, i) => i % 4 === 3))""",
                         [x0, y, x1])


def _open(p, server, photo):
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    page.goto(server)
    page.get_by_test_id("upload-input").set_input_files(str(photo))
    expect(page.get_by_test_id("status")).to_contain_text("Automatic cutout ready", timeout=60_000)
    box = page.get_by_test_id("result-canvas").bounding_box()
    scale = box["width"] / 512
    return browser, page, lambda x, y: (box["x"] + x * scale, box["y"] + y * scale)


def test_upload_erase_undo_download(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    with sync_playwright() as p:
        browser, page, to_page = _open(p, server, photo)
        sid = page.evaluate("document.body.dataset.session")
        before = _alpha(server, sid)
        # the astronaut's chest, well inside the person
        x0, x1, y = 180, 300, 400
        assert before[y, x0:x1].mean() > 100

        page.get_by_test_id("tool-erase").click()
        page.get_by_test_id("brush-size").fill("40")
        page.mouse.move(*to_page(x0, y))
        page.mouse.down()
        for x in range(x0, x1 + 1, 10):
            page.mouse.move(*to_page(x, y))
        page.mouse.up()
        expect(page.get_by_test_id("status")).to_contain_text("Erase applied", timeout=30_000)
        expect(page.get_by_test_id("status")).to_contain_text("ms after mouse-up")
        erased = _alpha(server, sid)
        assert erased[y, x0 + 10:x1 - 10].max() == 0
        assert page.evaluate("document.body.dataset.version") == "1"
        assert _drawn_alpha(page, x0 + 10, y, x1 - 10) == 0  # the page drew the change

        page.get_by_test_id("undo").click()
        expect(page.locator("body")).to_have_attribute("data-version", "0", timeout=30_000)
        assert np.array_equal(_alpha(server, sid), before)

        with page.expect_download() as info:
            page.get_by_test_id("download-png").click()
        download = info.value
        assert download.suggested_filename == "astronaut-cutout.png"
        rgba = Image.open(download.path())
        assert rgba.mode == "RGBA" and rgba.size == (512, 512)
        assert np.array_equal(np.asarray(rgba)[..., 3], before)
        page.screenshot(path=str(tmp_path / "editor.png"))
        browser.close()


def test_two_quick_strokes_both_land(server, tmp_path):
    """A stroke made while the previous one still applies is queued, not dropped."""
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    with sync_playwright() as p:
        browser, page, to_page = _open(p, server, photo)
        sid = page.evaluate("document.body.dataset.session")
        page.get_by_test_id("tool-erase").click()
        page.get_by_test_id("brush-size").fill("20")
        for y in (380, 440):
            page.mouse.move(*to_page(180, y))
            page.mouse.down()
            page.mouse.move(*to_page(240, y))
            page.mouse.move(*to_page(300, y))
            page.mouse.up()
            page.wait_for_timeout(50)
        page.wait_for_function("document.body.dataset.version === '2'", timeout=30_000)
        alpha = _alpha(server, sid)
        for y in (380, 440):
            assert alpha[y, 190:290].max() == 0
            assert _drawn_alpha(page, 190, y, 290) == 0
        browser.close()


def test_history_buttons_follow_the_history_and_the_toolbar_holds_still(server, tmp_path):
    """Issue 19 item 4: right after upload Undo, Redo and Reset are disabled and Ctrl+Z says so
    without an error; an edit enables Undo and Reset, undo enables Redo; choosing Refine edge
    moves no button; a photo with a Cyrillic and emoji name downloads under that name."""
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "фото 😀.jpg"
    Image.fromarray(astronaut()).save(photo)
    with sync_playwright() as p:
        browser, page, to_page = _open(p, server, photo)
        undo, redo, reset = (page.get_by_test_id(k) for k in ("undo", "redo", "reset"))
        for button in (undo, redo, reset):
            expect(button).to_be_disabled()
        expect(page.get_by_test_id("tool-erase")).to_be_enabled()
        page.keyboard.press("Control+z")
        status = page.get_by_test_id("status")
        expect(status).to_have_text("Nothing to undo yet.")
        expect(status).not_to_have_class("error")

        places = [b.bounding_box() for b in (undo, redo, reset)]
        page.get_by_test_id("tool-refine").click()
        expect(page.get_by_test_id("edge-radius")).to_be_visible()
        assert [b.bounding_box() for b in (undo, redo, reset)] == places
        page.get_by_test_id("tool-erase").click()
        expect(page.get_by_test_id("edge-radius")).to_be_hidden()
        assert [b.bounding_box() for b in (undo, redo, reset)] == places

        page.mouse.move(*to_page(200, 400))
        page.mouse.down()
        page.mouse.move(*to_page(260, 400))
        page.mouse.up()
        expect(page.locator("body")).to_have_attribute("data-version", "1", timeout=30_000)
        expect(undo).to_be_enabled()
        expect(reset).to_be_enabled()
        expect(redo).to_be_disabled()
        undo.click()
        expect(page.locator("body")).to_have_attribute("data-version", "0", timeout=30_000)
        expect(redo).to_be_enabled()
        expect(undo).to_be_disabled()
        expect(reset).to_be_disabled()

        for testid, suffix in (("download-png", "cutout.png"), ("download-alpha", "alpha.png")):
            with page.expect_download() as info:
                page.get_by_test_id(testid).click()
            assert info.value.suggested_filename == f"фото 😀-{suffix}"
        with page.expect_download() as info:
            page.get_by_test_id("download-jpg").click()
        assert info.value.suggested_filename == "фото 😀-composite.jpg"
        browser.close()
