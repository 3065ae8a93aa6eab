"""The README's examples run as written: every ``bash`` and ``python`` block of its "Command
line", "Python", "GPUs" and "Your own weights" sections, in order, in a folder holding a small
generated photo and the files the examples name.

Shell lines are split as a shell splits them (``shlex``, comments dropped) and run in this
process through the ``shm`` app, which spares a Python start and a model load per line; the
globs they quote reach ``shm`` unexpanded, as they do from a shell. Lines that cannot run here
are skipped by name, each for the reason in ``SKIPPED``, and the test fails on any other line
it cannot run.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shm.cli import app
from tests.conftest import person_alpha

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = ("Command line", "Python", "GPUs", "Your own weights")
SKIPPED = {  # the start of a line -> why it is not run here
    "shm train": "trains for minutes to hours on ../shared/data; tests/test_training.py trains "
                 "tiny models (the weights it would write are made by the fixture instead)",
    "torchrun": "DDP training, as above",
    "shm batch catalogue/ cutouts/ --engine ray": "needs a running Ray cluster (--ray-address "
                                                  "auto); tests/test_batch.py runs the ray engine",
    "shm serve": "serves until stopped; tests/test_editor_*.py test the app it serves",
}
NEEDS_CUDA = "--device cuda"


def blocks(section: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README's ``## section``."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {section}' section"
    return re.findall(r"^```(\w+)\n(.*?)^```", match.group(1), re.S | re.M)


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_weights):
    """A folder with photo.jpg and what the examples read: folders of photos, predictions,
    ground truths and trimaps, a P3M-style dataset and ``runs/tnet`` (a tiny model standing in
    for what ``shm train --out runs/tnet`` writes)."""
    rng = np.random.default_rng(0)

    def photo(path: Path, h: int = 72, w: int = 56, seed: int = 0) -> np.ndarray:
        alpha = person_alpha(h, w, seed)[..., None] / 255.0
        img = (alpha * [200, 160, 140] + (1 - alpha) * rng.integers(0, 90, (h, w, 3)))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(path)
        return (alpha[..., 0] * 255).astype(np.uint8)

    photo(tmp_path / "photo.jpg")
    photo(tmp_path / "folder" / "a.jpg", seed=1)
    photo(tmp_path / "shoots" / "day1" / "b.png", seed=2)
    photo(tmp_path / "catalogue" / "c1.jpg", seed=3)
    photo(tmp_path / "catalogue" / "sub" / "c2.png", seed=4)
    p3m = tmp_path / "P3M-10k" / "validation" / "P3M-500-NP"
    for folder in ("preds", "alphas", "trimaps"):
        (tmp_path / folder).mkdir()
    for stem, seed in (("x", 5), ("y", 6)):
        alpha = photo(p3m / "original_image" / f"{stem}.jpg", seed=seed)
        trimap = np.where(alpha > 127, 255, 0).astype(np.uint8)
        trimap[(alpha > 0) & (alpha < 255)] = 128
        for folder, data in (("mask", alpha), ("trimap", trimap)):
            (p3m / folder).mkdir(exist_ok=True)
            Image.fromarray(data).save(p3m / folder / f"{stem}.png")
        Image.fromarray(alpha).save(tmp_path / "alphas" / f"{stem}.png")
        Image.fromarray(trimap).save(tmp_path / "trimaps" / f"{stem}.png")
        Image.fromarray(np.clip(alpha.astype(int) + 9, 0, 255).astype(np.uint8)).save(
            tmp_path / "preds" / f"{stem}.png")
    shutil.copytree(tiny_weights, tmp_path / "runs" / "tnet")
    monkeypatch.setenv("SHM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_shell(code: str, skipped: list[str]) -> None:
    runner = CliRunner()
    for line in code.strip().splitlines():
        why = next((r for start, r in SKIPPED.items() if line.startswith(start)), None)
        if why is None and NEEDS_CUDA in line and not torch.cuda.is_available():
            why = "needs a CUDA GPU"
        if why is not None:
            skipped.append(line.split("#")[0].strip())
            continue
        words = shlex.split(line, comments=True)
        assert words[0] == "shm", f"not an shm command: {line}"
        res = runner.invoke(app, words[1:])
        assert res.exit_code == 0, f"{line}\n{res.output}"


@pytest.mark.slow  # about a minute: the shipped model loads once per command
def test_readme_examples_run_as_written(workdir):
    from shm.inference.predictor import default_model

    skipped: list[str] = []
    ran = {"bash": 0, "python": 0}
    default_model.cache_clear()
    try:
        for section in SECTIONS:
            for lang, code in blocks(section):
                assert lang in ran, f"a {lang} block in '## {section}'"
                if lang == "bash":
                    run_shell(code, skipped)
                else:
                    exec(compile(code, f"README.md ## {section}", "exec"), {})
                ran[lang] += 1
    finally:
        default_model.cache_clear()
    assert ran == {"bash": 3, "python": 2}
    # what the examples say they write
    assert Image.open("out/photo.png").mode == "RGBA" and Image.open("out/b.png").size == (56, 72)
    assert Image.open("mattes/photo.png").mode == "L"
    assert Image.open("cutouts/photo.jpg").format == "JPEG"
    assert {p.name for p in Path("cutouts").rglob("c*.png")} == {"c1.png", "c2.png"}
    assert (Path("onnx") / "mnet.onnx").is_file() and Image.open("out-onnx/photo.png").mode == "RGBA"
    assert Image.open("cutout.png").mode == "RGBA" and Image.open("mine.png").mode == "RGBA"
    assert Image.open("out-mine-onnx/photo.png").size == (56, 72)
    assert sorted(skipped) == sorted(
        ["shm batch catalogue/ cutouts/ --engine ray --ray-address auto",
         "shm train --stage tnet --out runs/tnet", "shm train --stage tnet --out runs/tnet",
         "shm serve --device cuda"]
        + ([] if torch.cuda.is_available() else ["shm cutout photo.jpg --device cuda --precision "
                                                 "fp32 -o out-gpu/"]))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_what_serving_needs_and_make_test_everything(tmp_path):
    """The README's two top commands: ``make run`` sets up .venv and serves the editor without
    the test and bench extras; ``make test`` sets up everything and runs the tests."""
    import subprocess

    root = README.parent

    def plan(target: str, venv: Path) -> list[str]:
        # --no-print-directory: under `make test` (CI) make would add Entering/Leaving lines
        out = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
                             cwd=root, check=True, capture_output=True, text=True).stdout
        return [line.strip() for line in out.splitlines()]

    fresh = plan("run", tmp_path / "venv")
    installs = [line for line in fresh if " install " in line]
    assert any(line.endswith("install -q -e .") for line in installs), installs
    assert not any("[" in line for line in installs)  # no extras
    assert fresh[-1] == f"{tmp_path / 'venv'}/bin/shm serve"
    full = tmp_path / "full"
    full.mkdir()
    (full / ".installed").touch()  # after make setup or make test: nothing more to install
    assert plan("run", full) == [f"{full}/bin/shm serve"]
    test = plan("test", tmp_path / "venv2")
    assert any('install -q -e ".[test,bench]"' in line for line in test)
    assert test[-1].endswith("bin/python -m pytest -q")
