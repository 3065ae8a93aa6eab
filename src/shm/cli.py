"""The ``shm`` command line: cutout, eval, train, serve. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from shm.data.datasets import LAYOUTS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Fully automatic human matting: cutouts, evaluation, training, editor.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)



def fail(message: str, code: int = 1) -> NoReturn:
    """Print one sentence to stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _load(weights: Path | None, backend: str = "torch", device: str = "auto",
          precision: str = "auto", **kwargs):
    from shm.inference.predictor import load_model

    err.print("Loading the model...", highlight=False)
    try:
        return load_model(weights, backend, device, precision, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


BACKEND_HELP = ("torch, or onnx: a folder written by `shm export --onnx DIR` as --weights "
                "(default: the shipped model, exported once).")
DEVICE_HELP = "auto (a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps."
PRECISION_HELP = "auto (fp16 on CUDA, else fp32), fp32, fp16 or bf16."


def _check_device(backend: str, device: str, precision: str, here: bool = True) -> None:
    """Exit with one sentence (code 2) if ``device`` or ``precision`` cannot be used on this
    machine or, unless ``here`` (the model runs elsewhere: Ray actors), are no known names."""
    from shm.inference.devices import (
        PRECISIONS,
        onnx_providers,
        parse_device,
        resolve_device,
        resolve_precision,
    )

    try:
        if backend not in ("torch", "onnx"):
            raise ValueError(f"Unknown backend {backend!r}; choose torch or onnx.")
        if not here:
            parse_device(device)
            if precision not in PRECISIONS:
                raise ValueError(f"Unknown precision {precision!r}; choose one of "
                                 f"{', '.join(PRECISIONS)}.")
        elif backend == "onnx":
            onnx_providers(device, precision)
        else:
            resolve_precision(resolve_device(device), precision)
    except ValueError as e:
        fail(str(e), 2)


def _background_note(fmt: str, background: str | None) -> None:
    """Say why a PNG comes out opaque (RGB) when a background is given with --format rgba."""
    if fmt == "rgba" and background is not None:
        err.print(f"note: with --background the PNGs are opaque RGB, the subject over "
                  f"{background}; leave --background out for transparent RGBA.", highlight=False)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


@app.command()
def cutout(
    inputs: list[str] = typer.Argument(..., help="Image files, folders (recursive) or globs."),
    output: Path = typer.Option(Path("cutouts"), "-o", "--output", help="Output folder."),
    fmt: str = typer.Option("rgba", "--format", help="rgba (PNG), alpha (8-bit PNG) or jpg."),
    background: str | None = typer.Option(None, help="Colour (name or #rrggbb) or image file "
                                             "to put behind the subject (jpg: white by default)."),
    overwrite: bool = typer.Option(False, help="Replace existing output files (else they are "
                                   "skipped)."),
    weights: Path | None = typer.Option(None, help="Model folder; default: the shipped model."),
    backend: str = typer.Option("torch", help=BACKEND_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    max_pixels: int = typer.Option(50_000_000, help="Refuse images with more pixels than this."),
) -> None:
    """Cut the people out of photos, with no trimap to draw."""
    from shm.fileio import write_bytes_atomic
    from shm.inference.images import ImageError
    from shm.inference.inputs import expand
    from shm.inference.outputs import FORMATS, output_names, parse_background, render

    if fmt not in FORMATS:
        fail(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.", 2)
    if background is not None:
        try:
            parse_background(background, (1, 1))
        except (ValueError, ImageError) as e:
            fail(str(e), 2)
    _check_device(backend, device, precision)
    _background_note(fmt, background)
    found = expand(inputs, output)
    failed = [(spec, "no such file, folder or matching glob") for spec in found.missing]
    names = output_names([rel for _, rel in found.files], fmt)
    model = _load(weights, backend, device, precision, max_pixels=max_pixels)
    done, skipped, written = 0, 0, {}
    with _progress() as bar:
        task = bar.add_task("cutout", total=len(found.files))
        for path, rel in found.files:
            bar.update(task, description=f"cutout {rel}")
            target = output / names[rel]
            first = written.setdefault(target.as_posix().casefold(), path)
            try:
                if first != path:
                    raise FileExistsError(f"{target} is the cutout of {first} already; cut this "
                                          "one out into another folder or rename it")
                if target.exists() and not overwrite:
                    skipped += 1
                    bar.advance(task)
                    continue
                write_bytes_atomic(target, render(model.predict(path), fmt, background), overwrite)
                done += 1
            except (ImageError, FileExistsError, ValueError, OSError) as e:
                failed.append((str(path), str(e).rstrip(".")))
            bar.advance(task)
        bar.update(task, description="cutout")
    kept = f", {skipped} skipped as they exist (--overwrite replaces them)" if skipped else ""
    err.print(f"{done} written to {output}{kept}, {len(failed)} failed.", highlight=False)
    _print_skipped_folders(found.skipped)
    for name, reason in failed:
        err.print(f"  failed: {name}: {reason}.", highlight=False)
    if failed:
        raise typer.Exit(1)


def _print_skipped_folders(skipped: list[tuple[str, str]] | dict[str, str]) -> None:
    for folder, reason in dict(skipped).items():
        err.print(f"  skipped folder: {folder}: {reason}.", highlight=False)


@app.command("eval")
def eval_cmd(
    pred: Path | None = typer.Option(None, help="Folder of predicted alphas."),
    gt: Path | None = typer.Option(None, help="Folder of ground-truth alphas."),
    trimap: Path | None = typer.Option(None, help="Folder of trimaps (128 = unknown)."),
    data: Path | None = typer.Option(None, help="Dataset folder to run the model on."),
    layout: str = typer.Option("folder", help=f"Dataset layout: {', '.join(LAYOUTS)}."),
    weights: Path | None = typer.Option(None, help="Model folder; default: the shipped model."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object only."),
    skip_bad: bool = typer.Option(False, help="Skip unusable pairs with a warning."),
) -> None:
    """Score alpha mattes with SAD, MSE, Grad, Conn and the whole-image metrics."""
    import warnings

    import numpy as np

    from shm import metrics
    from shm.data.datasets import DatasetError, iter_loaded, open_dataset, pair_folders
    from shm.inference.images import ImageError

    if (data is None) == (pred is None and gt is None):
        fail("Give either --pred and --gt (score existing predictions) or --data (run the model).", 2)
    if data is None and (pred is None or gt is None):
        fail("--pred and --gt go together; give both.", 2)
    if layout not in LAYOUTS:
        fail(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.", 2)
    rows: dict[str, dict] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            samples = (pair_folders(pred, gt, trimap, skip_bad) if data is None
                       else open_dataset(data, layout, skip_bad))
            model = _load(weights) if data is not None else None
            with _progress() as bar:
                task = bar.add_task("eval", total=len(samples))
                for sample, (alpha, source, tri_map) in iter_loaded(samples, skip_bad):
                    if model is None:
                        guess = source[..., 0] if source.ndim == 3 else source
                    else:
                        rgb = source if source.ndim == 3 else np.repeat(source[..., None], 3, 2)
                        guess = model.predict(rgb).alpha_u8()
                    rows[sample.stem] = metrics.evaluate(guess, alpha, tri_map)
                    bar.advance(task)
        except (DatasetError, ImageError, ValueError) as e:
            fail(str(e))
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
    if not rows:
        fail("No image could be scored.")
    mean = {k: _mean([r[k] for r in rows.values()]) for k in metrics.KEYS}
    if as_json:
        clean = {s: {k: _finite(v) for k, v in r.items()} for s, r in rows.items()}
        print(json.dumps({"images": clean, "mean": {k: _finite(v) for k, v in mean.items()}}))
        return
    _print_table(rows, mean, metrics.KEYS)


def _mean(values: list) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _finite(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else v


def _print_table(rows: dict, mean: dict, keys: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table("image", *keys)
    fmt = lambda v: "-" if v is None or math.isnan(v) else f"{v:.4g}"  # noqa: E731
    for stem, r in rows.items():
        table.add_row(stem, *(fmt(r[k]) for k in keys))
    table.add_row("[bold]mean", *(fmt(mean[k]) for k in keys))
    out.print(table)


@app.command()
def train(
    stage: str = typer.Option(..., help="tnet, mnet, end2end or refine (M-Net on the T-Net's trimaps)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for checkpoints, log and weights."),
    data: Path | None = typer.Option(None, help="Data folder; default $SHM_DATA or ../shared/data."),
    model: str | None = typer.Option(None, help="Preset: mobile (default without --init), mobile-lite "
                                     "(3-level M-Net, half the tile margin), mobile-effnet-lite0 (an "
                                     "EfficientNet-Lite0 T-Net encoder) or paper. "
                                     "With --init: take from it only the parts that match."),
    init: Path | None = typer.Option(None, help="Weights folder of the previous stage."),
    steps: int = typer.Option(1000, help="Total optimiser steps of this stage."),
    batch_size: int = typer.Option(8, help="Crops per step (per process under torchrun)."),
    crop: int = typer.Option(288, help="Crop size in pixels (a multiple of 32)."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (cosine decay)."),
    checkpoint_every: int = typer.Option(50, help="Steps between checkpoints."),
    snapshot_every: int = typer.Option(0, min=0, help="Also keep the weights every N steps in "
                                       "OUT/snapshots/step-N (for shm average); 0: never."),
    resume: bool = typer.Option(False, help="Continue from --out/checkpoint.pt."),
    seed: int = typer.Option(0, help="Seed of data order and augmentation."),
    workers: int = typer.Option(1, help="Data-loading processes."),
    real: float = typer.Option(0.0, min=0.0, max=1.0,
                               help="Fraction of samples kept on the photo's own background."),
    band: str = typer.Option("0.005,0.02", help="Unknown-band radius of the trimaps: LOW,HIGH "
                             "fractions of the short side, drawn uniformly per sample."),
    flip: bool = typer.Option(True, help="refine: average the T-Net's trimaps with its mirror "
                              "image's, as inference does."),
    augment: bool = typer.Option(False, help="tnet: scenes with more people, small people, "
                                 "occluders, rotation, head and person blur, camera effects."),
    camera: float = typer.Option(0.85, min=0.0, max=1.0, help="With --augment: fraction of "
                                 "samples through the camera chain (blur, noise, exposure...)."),
    dark: float = typer.Option(0.0, min=0.0, max=1.0, help="With --augment: fraction of samples "
                               "with part of the person darkened (a dark garment or visor)."),
    prints: float = typer.Option(0.0, "--print", min=0.0, max=1.0, help="With --augment: "
                                 "fraction of samples with part of the person painted with "
                                 "another photo (a printed shirt, a screen, a mirroring visor)."),
    bystanders: float = typer.Option(0.0, min=0.0, max=1.0, help="With --augment: fraction of "
                                     "samples with one or two people out of focus behind the "
                                     "person, labelled background (passers-by)."),
    portrait: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction of samples framed as "
                                   "portraits and half-bodies (cut by the frame's bottom edge)."),
    close_up: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of the --portrait frames "
                                   "that are close-ups (the chin or neck at the bottom edge)."),
    balance: bool = typer.Option(True, help="Draw each photo source equally often."),
    freeze: int = typer.Option(0, min=0, help="tnet, end2end: leave the first N blocks of the "
                               "T-Net's encoder untrained (4: strides 2 and 4), for speed."),
    view: int = typer.Option(0, min=0, help="refine, end2end: the T-Net's input long side in "
                             "training (0: the model's). Lower for speed, then the model's for "
                             "the last steps (FixRes)."),
) -> None:
    """Train one stage (torchrun --nproc-per-node N shm train ... for DDP)."""
    from shm.paths import default_data_root
    from shm.training.trainer import TrainConfig
    from shm.training.trainer import train as run

    if crop % 32:
        fail(f"--crop {crop} is not a multiple of 32; use e.g. {crop // 32 * 32 or 32}.", 2)
    cfg = TrainConfig(stage, data or default_data_root(), out_dir, model, init, steps, batch_size,
                      crop, lr, checkpoint_every, snapshot_every=snapshot_every, seed=seed,
                      workers=workers, real=real, band=_band(band), flip=flip, augment=augment,
                      camera=camera, dark=dark, prints=prints, bystanders=bystanders,
                      portrait=portrait, close_up=close_up, balance=balance, freeze=freeze,
                      view=view)
    try:
        result = run(cfg, resume=resume)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if int(os.environ.get("RANK", "0")) == 0:
        out.print_json(data=result)


@app.command()
def average(
    sources: list[Path] = typer.Argument(..., help="Weight folders fine-tuned from one start."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the averaged model."),
) -> None:
    """Average the weights of several models of one architecture (a model soup)."""
    from shm.pretrained import save_pretrained
    from shm.training.soup import average_models

    try:
        soup = average_models(sources)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    save_pretrained(soup, out_dir)
    err.print(f"Wrote the mean of {len(sources)} models to {out_dir}.", highlight=False)


def _band(text: str) -> tuple[float, float]:
    """'LOW,HIGH' as two fractions 0 < LOW <= HIGH < 0.5, or exit with one sentence."""
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        fail(f"--band {text!r} is not two numbers; write e.g. --band 0.005,0.1.", 2)
    if not 0 < low <= high < 0.5:
        fail(f"--band {text!r} needs 0 < LOW <= HIGH < 0.5 (fractions of the short side).", 2)
    return low, high


@app.command()
def batch(
    input_dir: Path = typer.Argument(..., help="Folder of photos (searched recursively)."),
    output_dir: Path = typer.Argument(..., help="Output folder; holds the resumable manifest."),
    fmt: str = typer.Option("rgba", "--format", help="rgba (PNG), alpha (8-bit PNG) or jpg."),
    background: str | None = typer.Option(None, help="Colour or image behind the subject."),
    workers: int = typer.Option(1, help="Processes (local) or actors (ray), each with a model."),
    engine: str = typer.Option("local", help="local (process pool) or ray (Ray Data)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address, e.g. "
                                              "ray://head:10001 or auto; default: a local Ray."),
    retry_failed: bool = typer.Option(False, help="Run inputs that failed before again."),
    weights: Path | None = typer.Option(None, help="Model folder; default: the shipped model."),
    backend: str = typer.Option("torch", help=BACKEND_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP + " With --engine ray, cuda gives "
                               "each actor a GPU."),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
) -> None:
    """Cut out a whole folder; rerun after a crash to finish only what is left."""
    from shm.batch import SUMMARY, ModelSpec, run_batch
    from shm.inference.images import ImageError
    from shm.inference.outputs import parse_background

    if background is not None:
        try:
            parse_background(background, (1, 1))
        except (ValueError, ImageError) as e:
            fail(str(e), 2)
    _check_device(backend, device, precision, here=engine != "ray")
    _background_note(fmt, background)
    if weights is not None:
        _load(weights, backend, "cpu")  # fail early, with one sentence, on a wrong folder
    spec = ModelSpec(None if weights is None else str(weights), backend, device, precision)
    with _progress() as bar:
        task = bar.add_task("batch", total=None)
        try:
            summary = run_batch(input_dir, output_dir, fmt, background, workers, engine,
                                ray_address, retry_failed, model=spec,
                                progress=lambda n, total: bar.update(task, completed=n, total=total))
        except (FileNotFoundError, ValueError) as e:
            fail(str(e), 2)
    before = (f" ({summary.failed_before} in an earlier run; --retry-failed runs them again)"
              if summary.failed_before else "")
    err.print(f"{summary.total} inputs: {summary.done} done, {summary.skipped} skipped as finished "
              f"before, {summary.failed} failed{before}; {summary.images_per_second:.2f} "
              f"images/s. Summary: {output_dir / SUMMARY}", highlight=False)
    _print_skipped_folders(summary.links_skipped)
    for rel, reason in summary.failures.items():
        err.print(f"  failed: {rel}: {reason}", highlight=False)
    if summary.failures:
        raise typer.Exit(1)


@app.command()
def export(
    onnx: Path = typer.Option(..., help="Folder to write tnet.onnx, mnet.onnx, config.json."),
    weights: Path | None = typer.Option(None, help="Model folder; default: the shipped model."),
) -> None:
    """Export the model to ONNX (dynamic height and width); use it with --backend onnx
    --weights DIR (cutout, batch, serve)."""
    from shm.inference.onnx import export_onnx

    folder = export_onnx(_load(weights, device="cpu", precision="fp32").model, onnx)
    err.print(f"Wrote {folder}/tnet.onnx and mnet.onnx; use them with "
              f"`shm cutout --backend onnx --weights {folder} ...`.", highlight=False)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path | None = typer.Option(None, help="Where sessions are kept; default "
                                            "$SHM_CACHE/editor (~/.cache/shm/editor)."),
    weights: Path | None = typer.Option(None, help="Model folder; default: the shipped model."),
    workers: int = typer.Option(2, help="Inference threads."),
    max_upload_mb: float = typer.Option(25, help="Largest accepted upload."),
    max_pixels: int = typer.Option(50_000_000, help="Largest accepted image, in pixels."),
    max_json_kb: float = typer.Option(1024, help="Largest accepted JSON body (strokes)."),
    history_mb: float = typer.Option(256, help="Undo history kept per session; older steps "
                                     "are dropped."),
    server_history_mb: float = typer.Option(512, help="Undo history kept by all sessions "
                                            "in memory together."),
    session_hours: float = typer.Option(24, help="Sessions are removed this long after "
                                        "their last use."),
    allow_host: list[str] = typer.Option([], metavar="NAME", help="Another host name the "
                                         "server answers to (besides localhost, 127.0.0.1, "
                                         "[::1] and --host); repeat for more."),
    backend: str = typer.Option("torch", help=BACKEND_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
) -> None:
    """Start the interactive editor in the browser (http://HOST:PORT)."""
    import socket

    import uvicorn

    from shm.editor.app import create_app
    from shm.paths import default_cache_dir

    _check_device(backend, device, precision)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as e:
            fail(f"Cannot listen on {host}:{port} ({e.strerror}); is the editor already running? "
                 f"Choose another port, e.g. {_this_program()} serve --port {port + 1}.")
    matter = _load(weights, backend, device, precision, max_pixels=max_pixels)
    app_ = create_app(matter, data_dir=data_dir or default_cache_dir() / "editor",
                      max_upload_mb=max_upload_mb, max_pixels=max_pixels, workers=workers,
                      max_json_kb=max_json_kb, history_mb=history_mb,
                      server_history_mb=server_history_mb, session_hours=session_hours,
                      allowed_hosts=[*allow_host, host])
    err.print(f"shm editor on http://{host}:{port}  (Ctrl+C stops it)", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _this_program() -> str:
    """How to run ``shm`` from the current folder: the ``shm`` script beside this Python (in
    its virtual environment, which need not be on PATH), relative where that is shorter."""
    script = Path(sys.executable).parent / "shm"
    if not script.is_file():
        return "shm"
    try:
        return str(script.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(script.absolute())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
