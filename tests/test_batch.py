import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shm.batch import MANIFEST, SUMMARY, Job, ModelSpec, Worker, run_batch
from tests.fuzz import zero_png


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64, 48 + 8 * i, 3), np.uint8)).save(
            folder / ("sub" if i % 2 else "") / f"p{i}.png")
    (folder / "broken.jpg").write_text("not a photo")
    return folder


def test_local_batch_writes_outputs_manifest_and_summary(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    summary = run_batch(photos, out, "alpha", workers=2, weights=tiny_weights)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (6, 5, 1, 0)
    assert "broken.jpg" in summary.failures and "not an image" in summary.failures["broken.jpg"]
    assert Image.open(out / "sub" / "p1.png").mode == "L"
    assert json.loads((out / SUMMARY).read_text())["done"] == 5
    again = run_batch(photos, out, "alpha", workers=1, weights=tiny_weights)
    assert (again.done, again.skipped, again.failed, again.failed_before) == (0, 5, 1, 1)
    assert list(again.failures) == ["broken.jpg"]  # still listed, and counted
    (photos / "broken.jpg").unlink()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photos / "broken.jpg", "JPEG")
    retried = run_batch(photos, out, "alpha", workers=1, weights=tiny_weights)
    assert (retried.done, retried.skipped) == (1, 5)  # changed content is redone


def test_retry_failed(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    run_batch(photos, out, "rgba", weights=tiny_weights)
    assert run_batch(photos, out, "rgba", retry_failed=True, weights=tiny_weights).failed == 1


def test_same_stem_inputs_get_distinct_outputs_and_the_output_folder_is_not_read(
        tmp_path, tiny_weights):
    src = tmp_path / "in"
    out = src / "out"  # inside the input folder
    src.mkdir()
    rng = np.random.default_rng(2)
    for name, size in (("a.jpg", (30, 20)), ("a.png", (40, 24)), ("b.png", (16, 16))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(src / name)
    summary = run_batch(src, out, "alpha", weights=tiny_weights)
    assert (summary.done, summary.failed) == (3, 0)
    assert Image.open(out / "a.jpg.png").size == (20, 30)
    assert Image.open(out / "a.png.png").size == (24, 40)
    assert Image.open(out / "b.png").size == (16, 16)  # no clash: the usual name
    again = run_batch(src, out, "alpha", weights=tiny_weights)
    assert (again.total, again.skipped) == (3, 3)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [
        "a.jpg.png", "a.png.png", "b.png"]
    with pytest.raises(ValueError, match="output folder is the input folder"):
        run_batch(src, src, "alpha", weights=tiny_weights)


def test_decompression_bomb_is_recorded_and_reruns_go_on(photos, tmp_path, tiny_weights):
    (photos / "bomb.png").write_bytes(zero_png(30000, 30000))
    out = tmp_path / "out"
    summary = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (summary.done, summary.failed) == (5, 2)
    assert "decompression bomb" in summary.failures["bomb.png"]
    with sqlite3.connect(out / MANIFEST) as db:
        assert db.execute("SELECT status FROM items WHERE rel='bomb.png'").fetchone() == ("failed",)
    again = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (again.skipped, again.failed, again.failed_before) == (5, 2, 2)
    retried = run_batch(photos, out, "alpha", retry_failed=True, weights=tiny_weights)
    assert (retried.done, retried.failed, retried.failed_before) == (0, 2, 0)
    assert sorted(retried.failures) == ["bomb.png", "broken.jpg"]


def test_worker_records_any_error_of_one_input(photos, tiny_weights):
    worker = Worker(ModelSpec(str(tiny_weights)), "alpha", None)

    def explode(source):
        raise RuntimeError("out of memory")

    worker.model.predict = explode
    job = Job("p0.png", str(photos / "p0.png"), str(photos / "never.png"), "0")
    assert worker(job) == (job, "RuntimeError: out of memory")


def test_rerun_redoes_an_output_the_user_deleted(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    first = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (first.done, first.failed) == (5, 1)
    expected = (out / "sub" / "p1.png").read_bytes()
    (out / "sub" / "p1.png").unlink()  # the manifest still says done
    again = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (again.done, again.skipped, again.failed_before) == (1, 4, 1)
    assert (out / "sub" / "p1.png").read_bytes() == expected


def _unreadable(monkeypatch, path):
    """Make ``path`` unreadable to the batch: mode 000, and, for root (who reads it anyway),
    an ``open`` in shm.batch that refuses it as the kernel refuses other users."""
    path.chmod(0)
    if os.geteuid() == 0:
        def refuse(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return open(file, *args, **kwargs)

        monkeypatch.setattr("shm.batch.open", refuse, raising=False)


def test_an_unreadable_input_is_one_failure(photos, tmp_path, tiny_weights, monkeypatch):
    _unreadable(monkeypatch, photos / "p0.png")
    out = tmp_path / "out"
    summary = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (summary.total, summary.done, summary.failed) == (6, 4, 2)
    assert summary.failures["p0.png"] == "cannot be read (Permission denied)"
    assert not (out / "p0.png").exists()
    again = run_batch(photos, out, "alpha", weights=tiny_weights)  # still unreadable
    assert (again.total, again.skipped, again.failed) == (6, 4, 2)
    assert "p0.png" in again.failures
    monkeypatch.undo()
    (photos / "p0.png").chmod(0o644)
    fixed = run_batch(photos, out, "alpha", weights=tiny_weights)
    assert (fixed.done, fixed.skipped) == (1, 4) and "p0.png" not in fixed.failures


def test_only_its_own_temp_files_are_removed(tmp_path, tiny_weights):
    project = tmp_path / "proj"
    (project / "photos").mkdir(parents=True)
    (project / "notes").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(project / "photos" / "a.png")
    others = [project / ".vimswap.tmp", project / "notes" / ".draft.tmp",
              project / ".b.png.shm-abcdefgh.tmp"]  # ours in form, but b.png is no output here
    for f in others:
        f.write_text("keep me")
    stale = project / ".a.png.shm-k2_x9zq0.tmp"  # what a kill during the write of a.png leaves
    stale.write_bytes(b"half a png")
    summary = run_batch(project / "photos", project, "alpha", weights=tiny_weights)
    assert summary.done == 1 and Image.open(project / "a.png").size == (16, 16)
    assert not stale.exists()
    assert all(f.read_text() == "keep me" for f in others)


def test_a_looping_folder_link_is_skipped_and_listed(photos, tmp_path, tiny_weights):
    (photos / "sub" / "up").symlink_to("..")
    summary = run_batch(photos, tmp_path / "out", "alpha", weights=tiny_weights)
    assert (summary.total, summary.done, summary.failed) == (6, 5, 1)
    assert summary.links_skipped == {str(photos / "sub" / "up"): f"a link back to {photos}, "
                                     "which would loop"}


def test_bad_arguments(photos, tmp_path):
    with pytest.raises(ValueError, match="local or ray"):
        run_batch(photos, tmp_path / "o", engine="spark")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        run_batch(tmp_path / "nope", tmp_path / "o")


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp, ...
            pids.append(int(stat.parent.name))
    return pids


N_KILLED = 400


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_minus_nine_leaves_no_worker_then_resume(tmp_path, tiny_weights):
    rng = np.random.default_rng(1)
    src = tmp_path / "many"
    src.mkdir()
    # enough photos that the run outlasts several polls: 40 finished between two polls in CI
    for i in range(N_KILLED):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), np.uint8)).save(src / f"{i:03d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "shm.cli", "batch", str(src), str(out), "--format", "alpha",
           "--weights", str(tiny_weights), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done_before: dict[str, float] = {}
    deadline = time.time() + 120
    while time.time() < deadline and len(done_before) < 5:
        time.sleep(0.02)
        if (out / MANIFEST).exists():
            try:
                with sqlite3.connect(out / MANIFEST) as db:
                    rows = db.execute("SELECT rel FROM items WHERE status='done'").fetchall()
            except sqlite3.OperationalError:
                continue
            done_before = {r: (out / r).stat().st_mtime_ns for (r,) in rows}
    workers = [pid for pid in _group(proc.pid) if pid != proc.pid]
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the batch process only, not its workers
        proc.wait()
        assert len(workers) >= 2  # the pool and, with spawn, a resource tracker
        deadline = time.time() + 10
        while time.time() < deadline and _group(proc.pid):
            time.sleep(0.1)
        assert not _group(proc.pid), "workers outlived the batch process by 10 s"
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert 5 <= len(done_before) < N_KILLED, "the run was not killed partway through"
    summary = run_batch(src, out, "alpha", weights=tiny_weights)
    assert summary.done + summary.skipped == N_KILLED and summary.failed == 0
    assert summary.skipped >= len(done_before)
    assert all((out / r).stat().st_mtime_ns == t for r, t in done_before.items())
    assert not list(out.rglob("*.tmp"))
    for i in range(N_KILLED):
        assert Image.open(out / f"{i:03d}.png").size == (96, 96)


@pytest.mark.slow
def test_ray_engine_gives_byte_identical_alphas(photos, tmp_path, tiny_weights):
    pytest.importorskip("ray")
    local = run_batch(photos, tmp_path / "local", "alpha", workers=2, weights=tiny_weights)
    remote = run_batch(photos, tmp_path / "ray", "alpha", workers=2, engine="ray",
                       weights=tiny_weights)
    assert (remote.done, remote.failed) == (local.done, local.failed) == (5, 1)
    for path in sorted((tmp_path / "local").rglob("p*.png")):
        twin = tmp_path / "ray" / path.relative_to(tmp_path / "local")
        assert path.read_bytes() == twin.read_bytes(), path.name
