"""README screenshots of the editor in headless Chromium: a generated group photo (two
overlapping astronauts, tests.conftest.group_of_astronauts) before and after Select subject.

Writes docs/editor-group.png and docs/editor-group-selected.png. Usage:
python bench/editor_screenshots.py [--chromium PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from editor_latency import ROOT, group_photo, serve
from PIL import Image

DOCS = ROOT / "docs"


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        photo = Path(tmp) / "group.png"
        Image.fromarray(group_photo(812, 512)).save(photo)
        base, server = serve(tmp)
        browser = p.chromium.launch(executable_path=args.chromium,
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(base)
        page.get_by_test_id("upload-input").set_input_files(str(photo))
        status = page.get_by_test_id("status")
        expect(status).to_contain_text("Automatic cutout ready", timeout=120_000)
        page.screenshot(path=str(DOCS / "editor-group.png"))
        page.get_by_test_id("tool-select-subject").click()
        box = page.get_by_test_id("result-canvas").bounding_box()
        scale = box["width"] / 812
        page.mouse.click(box["x"] + 120 * scale, box["y"] + 400 * scale)  # the one behind
        page.wait_for_function("document.body.dataset.version === '1'", timeout=60_000)
        page.mouse.move(box["x"] + box["width"] + 40, box["y"] + 40)
        page.screenshot(path=str(DOCS / "editor-group-selected.png"))
        print(status.inner_text())
        browser.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
