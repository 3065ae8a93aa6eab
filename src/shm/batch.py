"""Batch cutout of whole folders: a resumable manifest, a local process pool, or Ray Data.

The manifest (``OUTPUT_DIR/.shm-batch.sqlite``) records every input as done or failed with the
SHA-256 of its content, so a rerun after a crash or kill only does what is left: finished files
whose content is unchanged are skipped, failed ones too unless ``retry_failed``. Outputs are
written atomically (temporary file, then rename), so none is ever half-written. Inputs sharing a
stem (a.jpg, a.png) keep their whole name (a.jpg.png, a.png.png); an output folder inside the
input folder is not searched for inputs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shm.fileio import stale_temp_files
from shm.inference.inputs import find_images

if TYPE_CHECKING:
    from shm.inference.predictor import Matter

MANIFEST = ".shm-batch.sqlite"
SUMMARY = "batch-summary.json"


@dataclass(frozen=True)
class Job:
    """One input: ``rel`` is its path relative to the input folder."""

    rel: str
    source: str
    target: str
    sha256: str


@dataclass
class Summary:
    """Counts over the inputs: total = done + skipped + failed. done: finished in this run;
    skipped: finished in an earlier run, unchanged; failed: failed in this run or, not retried,
    in an earlier one (failed_before of them), or unreadable now; failures: input -> reason,
    one per failed; links_skipped: folder links (a loop, a folder searched already) and
    unreadable folders left out of the search -> why."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_before: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    links_skipped: dict[str, str] = field(default_factory=dict)


class Manifest:
    """SQLite table of (rel, sha256, status 'done'|'failed', error, updated)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS items (rel TEXT PRIMARY KEY, sha256 TEXT, "
                        "status TEXT, error TEXT, updated REAL)")

    def state(self) -> dict[str, tuple[str, str]]:
        return {rel: (sha, status) for rel, sha, status in
                self.db.execute("SELECT rel, sha256, status FROM items")}

    def record(self, job: Job, error: str | None) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)",
                            (job.rel, job.sha256, "failed" if error else "done", error, time.time()))

    def failures(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT rel, error FROM items WHERE status = 'failed'"))

    def close(self) -> None:
        self.db.close()


@dataclass
class Plan:
    """What a run has to do: jobs still to do; skipped, how many inputs finished before;
    failed_before, the inputs skipped as failed before; unreadable, input -> reason for those
    that cannot be read now; targets, the output path of every input; links, folder links and
    folders left out of the search -> why."""

    jobs: list[Job]
    skipped: int
    failed_before: set[str]
    unreadable: dict[str, str]
    targets: set[Path]
    links: dict[str, str]


def plan(input_dir: Path, output_dir: Path, fmt: str, retry_failed: bool, manifest: Manifest
         ) -> Plan:
    """Compare the inputs with the manifest: an input is redone unless it finished before with
    the same content and its output is still there, or failed before with the same content
    (unless ``retry_failed``)."""
    from shm.inference.outputs import output_names

    known = manifest.state()
    links: list[tuple[str, str]] = []
    paths = find_images(input_dir, exclude=output_dir, skipped=links)
    names = output_names((p.relative_to(input_dir) for p in paths), fmt)
    out = Plan([], 0, set(), {}, set(), dict(links))
    for path in paths:
        rel = path.relative_to(input_dir)
        target = output_dir / names[rel]
        out.targets.add(target)
        try:
            digest = sha256_of(path)
        except OSError as e:
            out.unreadable[rel.as_posix()] = f"cannot be read ({e.strerror or e})"
            continue
        sha, status = known.get(rel.as_posix(), (None, None))
        if sha == digest and status == "done" and target.is_file():
            out.skipped += 1
        elif sha == digest and status == "failed" and not retry_failed:
            out.failed_before.add(rel.as_posix())
        else:
            out.jobs.append(Job(rel.as_posix(), str(path), str(target), digest))
    return out


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks of ``chunk`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelSpec:
    """Which model each worker loads: ``shm.load_model(weights, backend, device, precision)``
    (weights None: the shipped model). Small and picklable, for worker processes and actors."""

    weights: str | None = None
    backend: str = "torch"
    device: str = "auto"
    precision: str = "auto"

    def load(self) -> Matter:
        from shm.inference.predictor import load_model

        return load_model(self.weights, self.backend, self.device, self.precision)


class Worker:
    """Holds one loaded model and processes jobs; used by both engines."""

    def __init__(self, spec: ModelSpec, fmt: str, background: str | None,
                 threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = spec.load()
        self.fmt, self.background = fmt, background

    def __call__(self, job: Job) -> tuple[Job, str | None]:
        from shm.fileio import write_bytes_atomic
        from shm.inference.images import ImageError
        from shm.inference.outputs import render

        try:
            data = render(self.model.predict(job.source), self.fmt, self.background)
            write_bytes_atomic(job.target, data, overwrite=True)
            return job, None
        except (ImageError, ValueError, OSError) as e:
            return job, str(e)
        except Exception as e:  # one bad input must not stop the batch
            return job, f"{type(e).__name__}: {e}"


_worker: Worker | None = None


def exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Exit this worker process within ``poll_s`` of its parent's death, even by kill -9 (which
    lets no cleanup run): a daemon thread watches for the re-parenting that follows."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="shm-exit-with-parent", daemon=True).start()


def _init_local(parent, spec, fmt, background, threads) -> None:
    global _worker  # one model per pool process, loaded once
    exit_with_parent(parent)
    _worker = Worker(spec, fmt, background, threads)


def _run_local(job: Job) -> tuple[Job, str | None]:
    return _worker(job)


def local_engine(jobs: list[Job], spec: ModelSpec, fmt: str, background: str | None,
                 workers: int) -> Iterator[tuple[Job, str | None]]:
    """A process pool; each process loads the model once and exits when this process dies.
    Processes are spawned, not forked: forking a process whose torch thread pool is running can
    deadlock the children."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_local,
                             initargs=(os.getpid(), spec, fmt, background, threads)) as pool:
        yield from pool.map(_run_local, jobs, chunksize=1)


def ray_engine(jobs: list[Job], spec: ModelSpec, fmt: str, background: str | None,
               workers: int, address: str | None) -> Iterator[tuple[Job, str | None]]:
    """Ray Data: map_batches over the jobs with actors that each hold the model. With a
    device 'cuda' each actor asks Ray for a GPU; Ray hides the GPUs from the others, so
    'auto' runs them on the CPU."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers,
                 include_dashboard=False, log_to_driver=False)

    class Actor:
        def __init__(self) -> None:
            self.worker = Worker(spec, fmt, background)

        def __call__(self, batch: dict) -> dict:
            errors = []
            for row in zip(*(batch[k] for k in ("rel", "source", "target", "sha256")), strict=True):
                _, error = self.worker(Job(*map(str, row)))
                errors.append(error or "")
            return {**batch, "error": errors}

    data = ray.data.from_items([asdict(j) for j in jobs])
    out = data.map_batches(Actor, batch_size=4, num_cpus=1, batch_format="numpy",
                           num_gpus=1 if spec.device.startswith("cuda") else 0,
                           compute=ray.data.ActorPoolStrategy(size=workers))
    try:
        for row in out.iter_rows():
            job = Job(*(str(row[k]) for k in ("rel", "source", "target", "sha256")))
            yield job, str(row["error"]) or None
    finally:
        if started_here:
            ray.shutdown()


def run_batch(input_dir: str | Path, output_dir: str | Path, fmt: str = "rgba",
              background: str | None = None, workers: int = 1, engine: str = "local",
              ray_address: str | None = None, retry_failed: bool = False,
              weights: str | Path | None = None,
              progress: Callable[[int, int], None] | None = None,
              model: ModelSpec | None = None) -> Summary:
    """Cut out every image under ``input_dir`` into ``output_dir`` (same relative paths).

    model: what each worker loads (default: ``weights`` on the torch backend, device auto).
    Returns the Summary, also written to ``output_dir/batch-summary.json``.
    progress(finished, to_do) is called after each image.
    """
    from shm.inference.outputs import FORMATS

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    spec = model or ModelSpec(None if weights is None else str(weights))
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir} is not a folder.")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if engine not in ("local", "ray"):
        raise ValueError(f"Unknown engine {engine!r}; choose local or ray.")
    if workers < 1:
        raise ValueError("--workers must be at least 1.")
    if output_dir.resolve() == input_dir.resolve():
        raise ValueError(f"The output folder is the input folder; write to another one, e.g. "
                         f"{output_dir / 'cutouts'}.")
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(output_dir / MANIFEST)
    start = time.perf_counter()
    try:
        todo = plan(input_dir, output_dir, fmt, retry_failed, manifest)
        for stale in stale_temp_files(todo.targets):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        jobs, failed_before = todo.jobs, todo.failed_before
        summary = Summary(total=len(jobs) + todo.skipped + len(failed_before) + len(todo.unreadable),
                          skipped=todo.skipped, failed=len(failed_before) + len(todo.unreadable),
                          failed_before=len(failed_before), links_skipped=todo.links)
        for rel, reason in todo.unreadable.items():
            manifest.record(Job(rel, str(input_dir / rel), "", ""), reason)
        results: Iterable = ([] if not jobs else
                             local_engine(jobs, spec, fmt, background, workers) if engine == "local"
                             else ray_engine(jobs, spec, fmt, background, workers, ray_address))
        for processed, (job, error) in enumerate(results, 1):
            manifest.record(job, error)
            summary.done += error is None
            summary.failed += error is not None
            if progress:
                progress(processed, len(jobs))
        current = failed_before | set(todo.unreadable) | {job.rel for job in jobs}
        summary.failures = {rel: e for rel, e in manifest.failures().items() if rel in current}
    finally:
        manifest.close()
    summary.seconds = time.perf_counter() - start
    summary.images_per_second = len(jobs) / summary.seconds if jobs else 0.0
    (output_dir / SUMMARY).write_text(json.dumps(asdict(summary), indent=2))
    return summary
