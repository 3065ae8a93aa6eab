"""The editor server under load, measured on a real `shm serve` process with the shipped model.

1. Load held: 10 parallel stroke streams on one 1 MP session against one stream (same run):
   strokes per second, latency, and any response other than 200.
2. Memory: the server's RSS over 200 mixed calls (stroke, alpha.png, undo, redo) on that
   session, and its peak RSS (VmHWM) under the 10 parallel streams of long strokes across the
   image (the largest undo steps), with the default undo-history budget.
3. Fuzz: mutated JPEG/PNG/WebP/TIFF uploads to POST /api/v1/matte; counts of each status.

Writes bench/results/server.json and bench/results/server.md. Usage:
python bench/server_load.py [--weights DIR] [--strokes N] [--fuzz N]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzz import mutants

RESULTS = Path(__file__).resolve().parent / "results"
STREAMS = 10


def photo_1mp() -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MiB (VmHWM: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def start_server(weights: Path | None, data_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "shm.cli", "serve", "--port", str(port), "--data-dir", data_dir]
    if weights:
        cmd += ["--weights", str(weights)]
    proc = subprocess.Popen(cmd)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def stroke_body(rng: np.random.Generator, long: bool) -> dict:
    """A keep or erase stroke (refine refuses strokes off the cutout's edge) across the image
    (the largest undo step) or a short one."""
    if long:
        y0, y1 = rng.uniform(0, 1024, 2)
        return {"tool": str(rng.choice(["keep", "erase"])), "size": 30,
                "points": [[0, float(y0)], [512, float(y1)], [1023, float(y0)]]}
    x, y = rng.uniform(100, 900, 2)
    return {"tool": str(rng.choice(["keep", "erase"])), "size": 30,
            "points": [[float(x), float(y)], [float(x) + 120, float(y) + 40]]}


def stream(client: httpx.Client, url: str, count: int, seed: int, long: bool) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        start = time.perf_counter()
        res = client.post(url, json=stroke_body(rng, long))
        out.append((res.status_code, (time.perf_counter() - start) * 1000))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--strokes", type=int, default=10, help="strokes per parallel stream")
    parser.add_argument("--fuzz", type=int, default=300)
    args = parser.parse_args()
    buf = io.BytesIO()
    Image.fromarray(photo_1mp()).save(buf, "PNG")
    with tempfile.TemporaryDirectory() as data_dir:
        proc, base = start_server(args.weights, data_dir)
        try:
            report = run(proc.pid, base, buf.getvalue(), args)
        finally:
            proc.terminate()
            proc.wait(30)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "server.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (RESULTS / "server.md").write_text(md)
    print(md)


def run(pid: int, base: str, photo: bytes, args: argparse.Namespace) -> dict:
    client = httpx.Client(base_url=base, timeout=600,
                          limits=httpx.Limits(max_connections=2 * STREAMS))
    idle = rss_mb(pid)
    res = client.post("/api/v1/sessions", files={"image": ("photo.png", photo, "image/png")})
    sid = res.json()["id"]
    url = f"/api/v1/sessions/{sid}/strokes"
    with_session = rss_mb(pid)

    start = time.perf_counter()
    one = stream(client, url, 2 * args.strokes, seed=0, long=False)
    one_rate = len(one) / (time.perf_counter() - start)

    peak, stop = [with_session], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(STREAMS) as pool:
        results = list(pool.map(lambda i: stream(client, url, args.strokes, 1 + i, long=True),
                                range(STREAMS)))
    parallel_s = time.perf_counter() - start
    stop.set()
    sampler.join()
    flat = [r for rs in results for r in rs]
    short = []
    with ThreadPoolExecutor(STREAMS) as pool:
        start = time.perf_counter()
        for rs in pool.map(lambda i: stream(client, url, args.strokes, 100 + i, long=False),
                           range(STREAMS)):
            short += rs
        short_s = time.perf_counter() - start

    rss_calls = []
    rng = np.random.default_rng(7)
    for i in range(200):
        kind = i % 4
        if kind == 0:
            client.post(url, json=stroke_body(rng, long=False))
        elif kind == 1:
            client.get(f"/api/v1/sessions/{sid}/alpha.png")
        else:
            client.post(f"/api/v1/sessions/{sid}/{'undo' if kind == 2 else 'redo'}")
        if (i + 1) % 50 == 0:
            rss_calls.append(round(rss_mb(pid)))

    codes: dict[str, int] = {}
    start = time.perf_counter()
    for _, data in mutants(args.fuzz, seed=14):
        res = client.post("/api/v1/matte", files={"image": ("x", data, "application/octet-stream")})
        codes[str(res.status_code)] = codes.get(str(res.status_code), 0) + 1
    fuzz_s = time.perf_counter() - start

    def latency(rs: list[tuple[int, float]]) -> dict:
        ms = [t for _, t in rs]
        return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                "not_200": sum(code != 200 for code, _ in rs)}

    return {
        "image": "astronaut upscaled to 1024x1024 (1.05 MP)", "streams": STREAMS,
        "one_stream": {"strokes": len(one), "strokes_per_s": one_rate, **latency(one)},
        "parallel_short": {"strokes": len(short), "strokes_per_s": len(short) / short_s,
                           **latency(short)},
        "parallel_long": {"strokes": len(flat), "strokes_per_s": len(flat) / parallel_s,
                          **latency(flat), "stroke": "30 px brush across the whole width"},
        "rss_mb": {"idle_with_model": round(idle), "with_session": round(with_session),
                   "peak_parallel_sampled": round(max(peak)), "peak_vmhwm": round(rss_mb(pid, "VmHWM")),
                   "after_each_50_of_200_calls": rss_calls},
        "fuzz": {"uploads": args.fuzz, "seconds": fuzz_s, "status_counts": codes},
        "throughput_ratio_parallel_vs_one": len(short) / short_s / one_rate,
        "peak_rss_ratio_vs_idle": rss_mb(pid, "VmHWM") / idle,
    }


def markdown(r: dict) -> str:
    one, short, long_ = r["one_stream"], r["parallel_short"], r["parallel_long"]
    rss = r["rss_mb"]
    return (
        "| 1 MP session, 2 CPU cores | strokes/s | median | p90 | not 200 |\n|---|---|---|---|---|\n"
        f"| baseline: one stream ({one['strokes']} strokes) | {one['strokes_per_s']:.1f} | "
        f"{one['median_ms']:.0f} ms | {one['p90_ms']:.0f} ms | {one['not_200']} |\n"
        f"| {r['streams']} parallel streams ({short['strokes']} strokes) | "
        f"{short['strokes_per_s']:.1f} | {short['median_ms']:.0f} ms | {short['p90_ms']:.0f} ms | "
        f"{short['not_200']} |\n"
        f"| {r['streams']} parallel streams of strokes across the image ({long_['strokes']}) | "
        f"{long_['strokes_per_s']:.1f} | {long_['median_ms']:.0f} ms | {long_['p90_ms']:.0f} ms | "
        f"{long_['not_200']} |\n\n"
        f"Throughput with {r['streams']} streams is {r['throughput_ratio_parallel_vs_one']:.2f}x "
        f"one stream's. Server RSS: {rss['idle_with_model']} MiB idle with the model, "
        f"{rss['with_session']} MiB with the session, peak {rss['peak_vmhwm']} MiB "
        f"({r['peak_rss_ratio_vs_idle']:.2f}x idle) under the parallel streams; after each 50 of "
        f"200 further calls: {', '.join(map(str, rss['after_each_50_of_200_calls']))} MiB. "
        f"Fuzz: {r['fuzz']['uploads']} mutated uploads to /api/v1/matte, status counts "
        f"{r['fuzz']['status_counts']}.\n")


if __name__ == "__main__":
    main()
