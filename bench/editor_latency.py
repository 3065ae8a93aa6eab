"""Editor latency a person feels: mouse-up to the new result drawn, in headless Chromium.

Starts the editor on the shipped model, opens a generated group photo (two copies of
scikit-image's public-domain astronaut) at about 1 MP and 12 MP, and paints strokes of the
same on-screen size (30 px brush, 120 px long, across the subject's edge) with keep, erase and
refine. The time is the page's own: from the pointerup event to the canvas updated for that
version (``document.body.dataset.waitedMs``). Baseline, same run and session: what the page did
before, fetching the whole cutout.png and alpha.png after each edit and drawing them.
Writes bench/results/editor.json and .md. Usage:
python bench/editor_latency.py [--strokes N] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("keep", "erase", "refine")
SIZES = {"1 MP": (1184, 888), "12 MP": (4000, 3000)}


def group_photo(width: int, height: int) -> np.ndarray:
    """Two overlapping astronauts on a plain gradient, (height, width, 3) uint8."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import group_of_astronauts

    return np.asarray(Image.fromarray(group_of_astronauts()[0]).resize((width, height), Image.BICUBIC))


def serve(data_dir: str) -> tuple[str, object]:
    """Start the editor on the shipped model in a thread; its URL and uvicorn server."""
    import uvicorn

    from shm.editor.app import create_app
    from shm.inference.predictor import load_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(load_model(), data_dir=data_dir),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def edge_points(base: str, sid: str, width: int, height: int, count: int) -> np.ndarray:
    with urllib.request.urlopen(f"{base}/api/v1/sessions/{sid}/alpha.raw") as res:
        alpha = np.frombuffer(res.read(), np.uint8).reshape(height, width)
    edge = np.argwhere((alpha > 25) & (alpha < 230))
    margin = 0.1 * min(width, height)
    edge = edge[(edge[:, 0] > margin) & (edge[:, 0] < height - margin) &
                (edge[:, 1] > margin) & (edge[:, 1] < width - margin)]
    return edge[np.random.default_rng(0).integers(len(edge), size=count)]


def run_size(page, base: str, photo: Path, size: tuple[int, int], strokes: int) -> dict:
    from playwright.sync_api import expect

    page.goto(base)
    page.evaluate("localStorage.clear()")
    page.goto(base)
    start = time.perf_counter()
    page.get_by_test_id("upload-input").set_input_files(str(photo))
    expect(page.get_by_test_id("status")).to_contain_text("Automatic cutout ready", timeout=300_000)
    open_s = time.perf_counter() - start
    sid = page.evaluate("document.body.dataset.session")
    box = page.get_by_test_id("result-canvas").bounding_box()
    zoom = box["width"] / size[0]
    page.get_by_test_id("brush-size").fill(str(min(200, round(30 / zoom))))
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {t: [] for t in TOOLS}
    server: list[float] = []  # of that, the edit on the server
    version = int(page.evaluate("document.body.dataset.version"))
    for i, (y, x) in enumerate(edge_points(base, sid, *size, strokes)):
        tool = TOOLS[i % 3]
        page.get_by_test_id(f"tool-{tool}").click()
        angle = rng.uniform(0, np.pi)
        t = np.linspace(-60, 60, 13)  # screen pixels
        px, py = box["x"] + x * zoom, box["y"] + y * zoom
        page.mouse.move(px + t[0] * np.cos(angle), py + t[0] * np.sin(angle))
        page.mouse.down()
        for d in t[1:]:
            page.mouse.move(px + d * np.cos(angle), py + d * np.sin(angle))
        page.mouse.up()
        version += 1
        page.wait_for_function(f"document.body.dataset.version === '{version}'", timeout=60_000)
        text = page.get_by_test_id("status").inner_text()
        if "applied" not in text:
            raise RuntimeError(f"stroke {i} ({tool}) failed: {text}")
        times[tool].append(float(page.evaluate("document.body.dataset.waitedMs")))
        server.append(float(page.evaluate("document.body.dataset.serverMs")))
    baseline = [page.evaluate("""async (sid) => {
        const t0 = performance.now(), base = `/api/v1/sessions/${sid}`;
        const load = (u) => new Promise((ok, bad) => { const i = new Image(); i.onload = () => ok(i);
          i.onerror = bad; i.src = `${u}?v=${Math.random()}`; });
        const [cut] = await Promise.all([load(`${base}/cutout.png`), load(`${base}/alpha.png`)]);
        const c = document.createElement("canvas"); c.width = cut.width; c.height = cut.height;
        c.getContext("2d").drawImage(cut, 0, 0);
        return performance.now() - t0; }""", sid) for _ in range(3 if size[0] * size[1] < 4e6 else 1)]
    every = [ms for v in times.values() for ms in v]
    return {"pixels": size[0] * size[1], "size": list(size), "open_s": round(open_s, 1),
            "brush_image_px": min(200, round(30 / zoom)), "strokes": len(every),
            "median_ms": float(np.median(every)), "p90_ms": float(np.percentile(every, 90)),
            "max_ms": float(np.max(every)), "server_edit_median_ms": float(np.median(server)),
            "by_tool": {k: {"median_ms": float(np.median(v)), "max_ms": float(np.max(v))}
                        for k, v in times.items()},
            "baseline_full_refetch_ms": float(np.median(baseline)),
            "speedup_vs_full_refetch": float(np.median(baseline) / np.median(every))}


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strokes", type=int, default=30, help="strokes per photo size")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    report = {"what": "mouse-up to drawn, in the page (pointerup timeStamp to canvas updated)",
              "browser": "headless Chromium (software rendering), 1200x800 window",
              "photo": "two overlapping astronauts (scikit-image), resized", "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        base, server = serve(tmp)
        browser = p.chromium.launch(executable_path=args.chromium, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        for name in args.sizes:
            size = SIZES[name]
            photo = Path(tmp) / f"group-{name.replace(' ', '')}.png"
            Image.fromarray(group_photo(*size)).save(photo, compress_level=1)
            report["sizes"][name] = run_size(page, base, photo, size, args.strokes)
            print(name, json.dumps(report["sizes"][name]), flush=True)
        browser.close()
        server.should_exit = True
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "editor.json").write_text(json.dumps(report, indent=2))
    rows = "".join(
        f"| {name} ({r['size'][0]}x{r['size'][1]}) | {r['median_ms']:.0f} ms | {r['p90_ms']:.0f} ms | "
        f"{r['max_ms']:.0f} ms | {r['baseline_full_refetch_ms']:.0f} ms | "
        f"{r['speedup_vs_full_refetch']:.0f}x |\n" for name, r in report["sizes"].items())
    md = ("| mouse-up to drawn, Chromium, 2 CPU cores | median | p90 | max | "
          "baseline: refetch whole cutout | speed-up |\n|---|---|---|---|---|---|\n" + rows +
          f"\n{args.strokes} strokes per size, keep/erase/refine in turn, "
          "30 px on screen (brush in image pixels: " +
          ", ".join(f"{n} {r['brush_image_px']} px" for n, r in report["sizes"].items()) + ").\n")
    (RESULTS / "editor.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
