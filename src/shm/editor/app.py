"""The editor's FastAPI app: HTTP API plus the static front end (no build step).

Build it with ``create_app``; ``shm serve`` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shm.editor.guard import Guard
from shm.editor.memory import return_large_blocks
from shm.editor.session import DEFAULT_EDGE, MAX_COORD, Change, EditError, EditSession
from shm.editor.store import SessionStore, UnknownSession
from shm.inference.images import DEFAULT_MAX_PIXELS, ImageError, load_image
from shm.inference.outputs import render
from shm.inference.predictor import Matter

STATIC = Path(__file__).parent / "static"
INLINE_PIXELS = 4_000_000  # an edit's answer carries its box's alpha up to this size
MAX_POINTS = 10_000  # per stroke; its JSON holds about 3 values per point
GONE = "No such session; it may have expired, so upload the photo again."
Coord = Annotated[float, Field(ge=-MAX_COORD, le=MAX_COORD, allow_inf_nan=False)]
Point = Annotated[list[Coord], Field(min_length=2, max_length=2)]
log = logging.getLogger(__name__)


def unusable(err: ImageError) -> HTTPException:
    """415 for files that are not a supported image, 422 for truncated or oversized ones."""
    unsupported = "not an image" in str(err) or "file; use" in str(err)
    return HTTPException(415 if unsupported else 422, str(err))


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """``load_image`` for the server: any failure to decode an upload is the upload's fault, so
    it becomes an HTTPException (4xx), never a 500."""
    try:
        return load_image(data, max_pixels)
    except ImageError as err:
        raise unusable(err) from None
    except MemoryError:
        raise HTTPException(413, "The image is too large to decode; send a smaller one.") from None
    except Exception as err:  # a decoder error the loader does not know yet
        log.warning("upload not decodable: %r", err)
        raise HTTPException(422, "The file is truncated or corrupt; re-export or re-download it."
                            ) from None


def attachment(name: str) -> str:
    """Content-Disposition for a download called ``name`` (any Unicode): RFC 6266's UTF-8
    ``filename*``, which browsers use, after an ASCII ``filename`` for older clients."""
    fallback = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


class Stroke(BaseModel):
    tool: Literal["keep", "erase", "refine"]
    size: float = Field(gt=0, le=4096, description="Brush diameter in image pixels.")
    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS,
                                description="[x, y] pairs in image coordinates.")
    edge: int = Field(DEFAULT_EDGE, ge=1, le=64, description="Refine's edge radius in pixels.")
    force: bool = Field(False, description="Keep everything under the brush, background too "
                                           "(else Keep adds the person under it).")


class Select(BaseModel):
    points: list[Point] = Field(min_length=1, max_length=100)
    remove: bool = Field(False, description="Drop the person under the points instead.")


class Created(BaseModel):
    id: str
    width: int
    height: int


class Edited(BaseModel):
    version: int
    ms: float
    box: list[int] = Field(description="[top, left, bottom, right]: where alpha may have changed "
                                       "(fetch it from alpha.raw).")
    note: str = ""
    can_undo: bool
    can_redo: bool
    alpha: str | None = Field(None, description="The box's alpha, uint8 row by row in base64, "
                                                "when the box is at most 4 MP (else fetch it).")


def create_app(matter: Matter | None = None, weights: str | Path | None = None,
               data_dir: str | Path = "shm-data", max_upload_mb: float = 25,
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
               max_pending: int = 16, max_json_kb: float = 1024, history_mb: float = 256,
               server_history_mb: float = 512, session_hours: float = 24,
               allowed_hosts: Iterable[str] = ()) -> FastAPI:
    """The editor app. matter: a loaded model (default: load ``weights``, or the shipped model,
    at startup). Inference runs in a pool of ``workers`` threads; beyond ``max_pending`` queued
    jobs, requests get 503. Limits: uploads of ``max_upload_mb`` and ``max_pixels``, other
    bodies of ``max_json_kb`` and 4 JSON values per stroke point allowed (so parsing one never
    holds the event loop long); each session's undo history within ``history_mb``, all of them
    within ``server_history_mb`` (split over the 4 sessions kept in memory); sessions expire
    ``session_hours`` after their last use. Requests must name this machine (localhost,
    127.0.0.1, [::1]) or one of ``allowed_hosts`` as Host and, if they carry an Origin, come
    from this server's own origin (the scheme, host and port they were sent to)."""
    state: dict = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shm-infer")
    pending = threading.BoundedSemaphore(max_pending)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    too_large = f"The upload is over {max_upload_mb:g} MB; send a smaller file."

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from shm.inference.predictor import load_model

        return_large_blocks()  # keeps freed undo steps from fragmenting the heap
        loop = asyncio.get_running_loop()
        loaded = matter or await loop.run_in_executor(
            pool, lambda: load_model(weights, max_pixels=max_pixels))
        state["store"] = SessionStore(loaded, data_dir, ttl=session_hours * 3600,
                                      history_bytes=int(history_mb * 1024**2),
                                      server_history_bytes=int(server_history_mb * 1024**2))
        state["matter"] = loaded
        # Full collections skip what is loaded by now (the model, torch: about 230k objects,
        # 0.1 s a pass), which a request building many objects would otherwise set off.
        gc.freeze()
        yield
        gc.unfreeze()
        await loop.run_in_executor(pool, state["store"].close)
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="shm editor", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Automatic human matting with trimap-constraint editing.")
    app.add_middleware(Guard, hosts=frozenset(allowed_hosts), upload_bytes=max_bytes,
                       json_bytes=int(max_json_kb * 1024), json_values=4 * MAX_POINTS,
                       upload_message=too_large)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return JSONResponse({"error": "Internal error; the server log has the details."},
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        message = f"Malformed request: {where}: {first.get('msg', 'invalid')}."
        return JSONResponse({"error": message}, status_code=422)

    async def run(fn, *args):
        if not pending.acquire(blocking=False):
            raise HTTPException(503, "The server is busy; try again in a moment.",
                                headers={"Retry-After": "1"})
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        finally:
            pending.release()

    async def read_upload(image: UploadFile) -> bytes:
        data = await image.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, too_large)
        if not data:
            raise HTTPException(400, "The upload is empty; choose a JPEG, PNG, WebP, TIFF or BMP photo.")
        return data

    def store() -> SessionStore:
        if "store" not in state:
            raise HTTPException(503, "The model is still loading; try again in a moment.",
                                headers={"Retry-After": "5"})
        return state["store"]

    def edit(sid: str, action) -> dict:
        st = store()
        start = time.perf_counter()
        try:
            with st.lock(sid):
                session = st.get(sid)
                change: Change = action(session)
                st.save(sid, session)
                top, left, bottom, right = change.box
                small = (bottom - top) * (right - left) <= INLINE_PIXELS
                alpha = base64.b64encode(session.alpha_u8(change.box)).decode() if small else None
        except UnknownSession:
            raise HTTPException(404, GONE) from None
        except EditError as e:
            raise HTTPException(409 if "Nothing to" in str(e) else 422, str(e)) from None
        return {"version": session.version, "ms": round((time.perf_counter() - start) * 1000, 1),
                "box": list(change.box), "note": change.note, "can_undo": session.can_undo,
                "can_redo": session.can_redo, "alpha": alpha}

    def inspect(sid: str, look):
        """``look(session)`` under the session's lock (worker thread)."""
        try:
            with store().lock(sid):
                return look(store().get(sid))
        except UnknownSession:
            raise HTTPException(404, GONE) from None

    def view(sid: str, picture) -> bytes:
        """PNG of ``picture(session)``, a PIL image (worker thread: the encode is CPU work)."""
        return encode_png(inspect(sid, picture))

    def png(data: bytes, name: str | None = None) -> Response:
        headers = {"Cache-Control": "no-store"}
        if name:
            headers["Content-Disposition"] = attachment(name)
        return Response(data, media_type="image/png", headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict:
        if "store" not in state:
            raise HTTPException(503, "The model is still loading.")
        return {"status": "ok"}

    @app.post("/api/v1/sessions", status_code=201, response_model=Created)
    async def create_session(image: UploadFile = File(...)) -> dict:
        data = await read_upload(image)
        rgb = await run(decode, data, store().matter.max_pixels)
        sid, session = await run(store().create, rgb, image.filename)
        return {"id": sid, "width": session.width, "height": session.height}

    @app.get("/api/v1/sessions/{sid}")
    async def session_info(sid: str) -> dict:
        try:
            meta = store().meta(sid)
        except UnknownSession:
            raise HTTPException(404, GONE) from None
        return {"id": sid, "width": meta["width"], "height": meta["height"], "name": meta["name"],
                "version": meta["version"], "can_undo": meta["version"] > 0,
                "can_redo": meta["version"] < len(meta["ops"])}

    @app.post("/api/v1/sessions/{sid}/strokes", response_model=Edited)
    async def stroke(sid: str, body: Stroke) -> dict:
        return await run(edit, sid, lambda s: s.stroke(body.tool, body.size, body.points,
                                                              body.edge, body.force))

    @app.post("/api/v1/sessions/{sid}/select", response_model=Edited)
    async def select(sid: str, body: Select) -> dict:
        return await run(edit, sid, lambda s: s.select(body.points, body.remove))

    @app.post("/api/v1/sessions/{sid}/undo", response_model=Edited)
    async def undo(sid: str) -> dict:
        return await run(edit, sid, EditSession.undo)

    @app.post("/api/v1/sessions/{sid}/redo", response_model=Edited)
    async def redo(sid: str) -> dict:
        return await run(edit, sid, EditSession.redo)

    @app.post("/api/v1/sessions/{sid}/reset", response_model=Edited)
    async def reset(sid: str) -> dict:
        return await run(edit, sid, EditSession.reset)

    def download_name(sid: str, suffix: str) -> str:
        try:
            return f"{store().meta(sid)['name']}-{suffix}"
        except UnknownSession:
            raise HTTPException(404, GONE) from None

    @app.get("/api/v1/sessions/{sid}/alpha.png")
    async def alpha_png(sid: str, download: bool = False) -> Response:
        data = await run(view, sid, lambda s: Image.fromarray(s.matte().alpha_u8(), "L"))
        return png(data, download_name(sid, "alpha.png") if download else None)

    @app.get("/api/v1/sessions/{sid}/cutout.png")
    async def cutout_png(sid: str, download: bool = False) -> Response:
        data = await run(view, sid, lambda s: s.matte().rgba())
        return png(data, download_name(sid, "cutout.png") if download else None)

    @app.get("/api/v1/sessions/{sid}/alpha.raw")
    async def alpha_raw(sid: str, top: int = Query(0, ge=0), left: int = Query(0, ge=0),
                        bottom: int | None = Query(None, ge=0), right: int | None = Query(None, ge=0)
                        ) -> Response:
        """Alpha of the box [top, bottom) x [left, right) (default: the whole image) as raw
        uint8 bytes, row by row; ``X-Version`` names the version they belong to."""
        def read(session: EditSession) -> tuple[bytes, int]:
            box = (top, left, min(session.height if bottom is None else bottom, session.height),
                   min(session.width if right is None else right, session.width))
            if box[2] <= box[0] or box[3] <= box[1]:
                raise HTTPException(422, "The box is empty or outside the image.")
            return session.alpha_u8(box).tobytes(), session.version

        data, version = await run(inspect, sid, read)
        return Response(data, media_type="application/octet-stream",
                        headers={"Cache-Control": "no-store", "X-Version": str(version)})

    @app.get("/api/v1/sessions/{sid}/foreground.png")
    async def foreground_png(sid: str) -> Response:
        """The colour-decontaminated foreground (RGB, no alpha) the page composites from."""
        return png(await run(view, sid, lambda s: Image.fromarray(s.matte().foreground)))

    @app.get("/api/v1/sessions/{sid}/image.png")
    async def image_png(sid: str) -> Response:
        return png(await run(view, sid, lambda s: Image.fromarray(s.image)))

    @app.get("/api/v1/sessions/{sid}/trimap.png")
    async def trimap_png(sid: str) -> Response:
        return png(await run(view, sid, lambda s: Image.fromarray(s.matte().trimap, "L")))

    @app.post("/api/v1/matte")
    async def matte(image: UploadFile = File(...), format: Literal["rgba", "alpha"] = "rgba"
                    ) -> Response:
        data = await read_upload(image)
        matter = store().matter
        rgb = await run(decode, data, matter.max_pixels)
        body = await run(lambda: render(matter.predict(rgb), format))
        return Response(body, media_type="image/png")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
