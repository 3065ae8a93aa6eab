"""One photo being edited: trimap constraints on top of the automatic result, with undo.

Every edit is a constraint on the trimap probabilities (``keep`` forces foreground, ``erase``
background), followed by the same fusion as the automatic path, recomputed only over the tiles
near the stroke (``REACH``); ``refine`` writes the refined alpha as soft foreground/background
probabilities (``shm.editor.tools.refine_edge``), and select subject erases the other people
(``shm.editor.tools.split_subject``). Reset is an edit too. Every edit returns a ``Change``: the
box where alpha may differ, which is all a client needs to fetch again. Each applied edit keeps
the patches it replaced, so undo and redo are exact and cheap. The patches kept are bounded by a byte budget
(``history_bytes``): past it, the oldest edits can no longer be undone. ``state()`` exports the
canvas and history so a session can be rebuilt without running the model (``EditSession(...,
state=...)``), however many edits it holds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from shm import trimap as tri
from shm.editor.tools import quick_select, refine_context, refine_edge, split_subject
from shm.inference.predictor import Matte, Matter, trimap_of
from shm.inference.tiles import TileConfig, TiledCanvas

TOOLS = {"keep": tri.FOREGROUND, "erase": tri.BACKGROUND, "refine": tri.UNKNOWN}
DEFAULT_EDGE = 3  # refine's edge radius in pixels (val hair strokes: SAD 12% lower at 3, 10% at 6)
# keep/erase re-run the M-Net on the cells within REACH px of the stroke. Re-running every cell
# whose window sees the stroke (REACH = the margin, 80 px) would be exact; the rest change little
# (8 strokes on a 1 MP photo: largest alpha difference 0.08, 751 pixels off by more than 1/255)
# and 12 MP strokes take 10-40% less time.
REACH = 16
KEEP_EDGE = 2  # px each side of the edge of a Keep stroke's person left to the M-Net
# Cells of at most EDIT_TILE px: an edit re-runs the M-Net on fewer pixels than with the 96-px
# cells of a one-shot cutout (1 MP photo, 16 strokes: median 65-85 ms against 110-115 ms, the
# automatic pass no slower).
EDIT_TILE = 48


def edit_tiles(matter: Matter) -> TileConfig:
    """The tiling an editing session uses: ``matter.tiles`` with cells of at most EDIT_TILE."""
    return dataclasses.replace(matter.tiles, tile=min(matter.tiles.tile, EDIT_TILE))
Box = tuple[int, int, int, int]  # top, left, bottom, right in image pixels
DEFAULT_HISTORY_BYTES = 256 * 1024**2
MAX_COORD = 1e6  # |x|, |y| of stroke points in pixels; far beyond any image, far below int32 / 16


def _brush(pts: np.ndarray, size: float, box: Box) -> np.ndarray:
    """(h, w) bool footprint over ``box`` of a brush of diameter ``size`` px drawn through
    ``pts`` ((N, 2) [x, y] image pixels)."""
    top, left, bottom, right = box
    mask = np.zeros((bottom - top, right - left), np.uint8)
    local = np.round((pts - [left, top]) * 16).astype(np.int32)
    for a, b in zip(local, local[1:] if len(local) > 1 else local, strict=False):
        cv2.line(mask, tuple(a), tuple(b), 1, max(1, round(size)), cv2.LINE_8, shift=4)
    for p in local:
        cv2.circle(mask, tuple(p), int(size / 2 * 16), 1, -1, cv2.LINE_8, shift=4)
    return mask > 0


class EditError(ValueError):
    """An edit that cannot be applied; the message says why in one sentence."""


@dataclass(frozen=True)
class Change:
    """What an edit did: ``box`` (top, left, bottom, right, image pixels) bounds where alpha may
    have changed; ``note`` says what was done in words, when there is more to say."""

    box: Box
    note: str = ""


@dataclass
class _Patch:
    """Region (rows, cols in canvas coordinates) with probs and alpha_r before and after."""

    rows: slice
    cols: slice
    before: tuple[torch.Tensor, torch.Tensor]
    after: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (*self.before, *(self.after or ())))


class EditSession:
    """Editing state of one image: the tiled canvas plus an undo/redo history.

    ``ops`` lists every applied edit as JSON-ready dicts; ``version`` counts the edits in effect;
    edits before ``base`` were dropped from the undo history to keep it within ``history_bytes``.
    ``state``: a snapshot from ``state()`` to restore instead of running the model (ValueError if
    it does not fit this image and tile configuration).
    """

    def __init__(self, matter: Matter, image: np.ndarray, history_bytes: int = DEFAULT_HISTORY_BYTES,
                 state: tuple[dict[str, torch.Tensor], dict[str, str]] | None = None) -> None:
        self.matter = matter
        self.image = image
        self.history_bytes = history_bytes
        self.ops: list[dict] = []
        self._patches: list[_Patch] = []
        self.version = self.base = 0
        if state is None:
            self.canvas = matter.canvas(image, edit_tiles(matter))
            matter.run_mnet(self.canvas)
        else:
            self._restore_state(*state)

    @property
    def height(self) -> int:
        return self.canvas.height

    @property
    def width(self) -> int:
        return self.canvas.width

    @property
    def can_undo(self) -> bool:
        return self.version > self.base

    @property
    def can_redo(self) -> bool:
        return self.version < self.base + len(self._patches)

    # edits ----------------------------------------------------------------------------------
    def stroke(self, tool: str, size: float, points: list[list[float]], edge: int = DEFAULT_EDGE,
               force: bool = False) -> Change:
        """Paint a brush stroke of diameter ``size`` pixels through ``points`` ([x, y] pairs in
        image coordinates) with tool 'keep', 'erase' or 'refine' (``edge``: refine's edge radius
        in pixels, 1 to 64). Keep adds the person under the brush, cut along the photo's edges
        (``tools.quick_select``); with ``force`` it keeps everything under the brush."""
        if tool not in TOOLS:
            raise EditError(f"Unknown tool {tool!r}; use keep, erase or refine.")
        if not 1 <= size <= 4096:
            raise EditError("Brush size must be between 1 and 4096 pixels.")
        if not 1 <= edge <= 64:
            raise EditError("The edge radius must be between 1 and 64 pixels.")
        pts = self._points(points)
        radius = size / 2
        top = max(0, int(pts[:, 1].min() - radius - 1))
        left = max(0, int(pts[:, 0].min() - radius - 1))
        bottom = min(self.height, int(pts[:, 1].max() + radius + 2))
        right = min(self.width, int(pts[:, 0].max() + radius + 2))
        if bottom <= top or right <= left:
            raise EditError("The stroke lies outside the image.")
        box = (top, left, bottom, right)
        op = {"op": "stroke", "tool": tool, "size": size, "points": pts.tolist()}
        mask = _brush(pts, size, box)
        if tool == "refine":
            return self._refine({**op, "edge": edge}, mask, box, edge)
        if tool == "keep" and not force:
            return self._keep({**op, "force": False}, pts, size, box)
        op = {**op, "force": True} if tool == "keep" else op
        return self._apply(op, np.where(mask, TOOLS[tool], -1), box)

    def select(self, points: list[list[float]], remove: bool = False) -> Change:
        """Keep only the person under the clicked points (``remove``: drop that person) by
        erasing the rest of the cutout; ``tools.split_subject`` tells the people apart."""
        pts = self._points(points)
        inside = (pts >= 0).all(1) & (pts[:, 0] < self.width) & (pts[:, 1] < self.height)
        if not inside.all():
            raise EditError("Select points must lie inside the image.")
        alpha = self.canvas.alpha()[0, 0].numpy()
        if not (alpha > 0.5).any():
            raise EditError("There is no foreground to select.")
        drop, people = split_subject(self.image, alpha, pts, remove)
        if not drop.any():
            raise EditError("Nothing to remove: only the selected subject is in the cutout."
                            if not remove else "Nothing to remove under the cursor.")
        share = alpha[drop].sum() / alpha.sum()
        note = (f"Removed the person under the cursor ({share:.0%} of the cutout)." if remove else
                f"Kept the clicked person; removed {people} other "
                f"{'part' if people == 1 else 'parts'} ({share:.0%} of the cutout).")
        rows, cols = np.flatnonzero(drop.any(1)), np.flatnonzero(drop.any(0))
        top, left, bottom, right = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
        op = {"op": "select", "points": pts.tolist(), "remove": remove}
        box = self._apply(op, np.where(drop[top:bottom, left:right], tri.BACKGROUND, -1),
                          (top, left, bottom, right)).box
        return Change(box, note)

    def undo(self) -> Change:
        if self.version == self.base:
            raise EditError("Nothing to undo." if self.base == 0 else
                            "Nothing to undo: older edits were dropped to bound the server's memory.")
        self.version -= 1
        patch = self._patches[self.version - self.base]
        self._restore(patch, "before")
        return Change(self._box(patch))

    def redo(self) -> Change:
        if self.version == self.base + len(self._patches):
            raise EditError("Nothing to redo.")
        patch = self._patches[self.version - self.base]
        self._restore(patch, "after")
        self.version += 1
        return Change(self._box(patch))

    def reset(self) -> Change:
        """Back to the automatic result, as an edit of its own: undo brings the edits back.
        With the whole history at hand it undoes the edits in effect over their union; when
        older edits were dropped, it runs the automatic pass again."""
        if self.version == 0:
            raise EditError("Nothing to reset: this is the automatic result.")
        held = self._patches[:self.version - self.base]
        if self.base == 0:
            rows = slice(min(p.rows.start for p in held), max(p.rows.stop for p in held))
            cols = slice(min(p.cols.start for p in held), max(p.cols.stop for p in held))
            patch = _Patch(rows, cols, self._grab(rows, cols))
            for p in reversed(held):
                self._restore(p, "before")
        else:
            rows, cols = slice(0, self.canvas.probs.shape[2]), slice(0, self.canvas.probs.shape[3])
            patch = _Patch(rows, cols, self._grab(rows, cols))
            fresh = self.matter.canvas(self.image, self.canvas.cfg)
            self.matter.run_mnet(fresh)
            self.canvas.probs.copy_(fresh.probs)
            self.canvas.alpha_r.copy_(fresh.alpha_r)
        return self._commit(patch, {"op": "reset"})

    def replay(self, ops: list[dict], version: int) -> None:
        """Re-apply stored ``ops`` (e.g. after a server restart), then undo down to ``version``.
        Raises EditError if the history budget no longer reaches back to ``version`` (replay
        ``ops[:version]`` on a fresh session instead, giving up the redo steps)."""
        for op in ops:
            if op["op"] == "stroke":
                # a Keep stored before quick selection (no "force") kept the whole brush
                self.stroke(op["tool"], op["size"], op["points"], op.get("edge", DEFAULT_EDGE),
                            op.get("force", True))
            elif op["op"] == "reset":
                self.reset()
            else:
                self.select(op["points"], op.get("remove", False))
        if version < self.base:
            raise EditError("The undo history budget no longer reaches that version.")
        while self.version > version:
            self.undo()

    def history_nbytes(self) -> int:
        """Bytes held by the undo history (at most ``history_bytes``)."""
        return sum(p.nbytes for p in self._patches)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The canvas tensors and undo history as named tensors plus string metadata (the form
        of a safetensors file); ``EditSession(matter, image, state=...)`` restores them."""
        tensors = {"probs": self.canvas.probs, "alpha_r": self.canvas.alpha_r}
        boxes = []
        for i, p in enumerate(self._patches):
            boxes.append([p.rows.start, p.rows.stop, p.cols.start, p.cols.stop])
            for which in ("before", "after"):
                tensors[f"{i}.{which}.probs"], tensors[f"{i}.{which}.alpha_r"] = getattr(p, which)
        cfg = self.canvas.cfg
        info = {"ops": self.ops, "version": self.version, "base": self.base, "boxes": boxes,
                "tiles": [cfg.tile, cfg.margin]}
        return tensors, {"session": json.dumps(info)}

    # results ---------------------------------------------------------------------------------
    def matte(self) -> Matte:
        return Matte(self.image, self.canvas.alpha()[0, 0].numpy(), trimap_of(self.canvas))

    def alpha_u8(self, box: Box | None = None) -> np.ndarray:
        """(h, w) uint8 alpha, round(alpha * 255), of the whole image or of ``box``."""
        return (self.canvas.alpha(box)[0, 0].numpy() * 255 + 0.5).astype(np.uint8)

    # internals -------------------------------------------------------------------------------
    def _points(self, points: list[list[float]]) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or len(pts) > 10_000:
            raise EditError("Points must be a list of 1 to 10000 [x, y] pairs.")
        if not (np.abs(pts) <= MAX_COORD).all():  # also catches NaN
            raise EditError(f"Point coordinates must be finite numbers within +-{MAX_COORD:g}.")
        return pts

    def _keep(self, op: dict, pts: np.ndarray, size: float, box: Box) -> Change:
        """Keep the person under the brush (``tools.quick_select`` over the stroke's ``box``
        plus a brush's width of context): foreground inside it, unknown within KEEP_EDGE px of
        its edge for the M-Net to make soft; background under the brush stays as it was."""
        pad = max(8, round(size))
        top, left = max(box[0] - pad, 0), max(box[1] - pad, 0)
        bottom, right = min(box[2] + pad, self.height), min(box[3] + pad, self.width)
        around = (top, left, bottom, right)
        brush = _brush(pts, size, around)
        core = _brush(pts, max(1.0, size / 6), around)
        alpha = self.canvas.alpha(around)[0, 0].numpy()
        person = quick_select(self.image[top:bottom, left:right], alpha, brush, core)
        if not person.any():
            raise EditError("Nothing to keep here: the brush covers no more of the person; hold "
                            "Shift while painting to keep everything under it.")
        ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * KEEP_EDGE + 1,) * 2)
        inner = cv2.erode(person.astype(np.uint8), ring) > 0
        edge = (cv2.dilate(person.astype(np.uint8), ring) > 0) & brush & ~inner
        classes = np.full(person.shape, -1, np.int8)
        classes[edge], classes[inner] = tri.UNKNOWN, tri.FOREGROUND
        return self._apply(op, classes, around)

    def _apply(self, op: dict, classes: np.ndarray, box: Box) -> Change:
        """Force each pixel's trimap class to ``classes`` (the size of ``box``, image
        coordinates; -1: leave as it is), then re-run the M-Net near."""
        cv = self.canvas
        m, t = cv.cfg.margin, cv.cfg.tile
        top, left, bottom, right = box
        mask = classes >= 0
        cells = self._cells_near(mask, box)
        r0 = min(r for r, _ in cells) * t
        r1 = (max(r for r, _ in cells) + 1) * t + 2 * m
        c0 = min(c for _, c in cells) * t
        c1 = (max(c for _, c in cells) + 1) * t + 2 * m
        patch = _Patch(slice(r0, r1), slice(c0, c1), self._grab(slice(r0, r1), slice(c0, c1)))
        region = cv.probs[0, :, m + top:m + bottom, m + left:m + right]
        for cls in np.unique(classes[mask]):
            value = torch.zeros(3)
            value[cls] = 1
            region[:, torch.from_numpy(classes == cls)] = value[:, None]
        self.matter.run_mnet(cv, cells)
        return self._commit(patch, op)

    def _cells_near(self, mask: np.ndarray, box: Box) -> set[tuple[int, int]]:
        """Cells (row, col) within ``REACH`` pixels of ``mask`` (the size of ``box``)."""
        t = self.canvas.cfg.tile
        top, left = box[0] - REACH, box[1] - REACH  # where the grown mask starts
        near = cv2.dilate(np.pad(mask.astype(np.uint8), REACH),
                          cv2.getStructuringElement(cv2.MORPH_RECT, (2 * REACH + 1,) * 2))
        r0, c0 = top // t, left // t
        h, w = near.shape
        grid = np.zeros((-(-(top - r0 * t + h) // t) * t, -(-(left - c0 * t + w) // t) * t), bool)
        grid[top - r0 * t:top - r0 * t + h, left - c0 * t:left - c0 * t + w] = near
        hit = grid.reshape(grid.shape[0] // t, t, grid.shape[1] // t, t).any(axis=(1, 3))
        return {(int(r0 + r), int(c0 + c)) for r, c in zip(*np.nonzero(hit), strict=True)
                if 0 <= r0 + r < self.canvas.rows and 0 <= c0 + c < self.canvas.cols}

    def _refine(self, op: dict, mask: np.ndarray, box: Box, edge: int) -> Change:
        """Write ``refine_edge``'s alpha under ``mask`` (the stroke over ``box``) as soft
        foreground/background probabilities; the M-Net does not run."""
        m, pad = self.canvas.cfg.margin, refine_context(edge)
        top, left = max(box[0] - pad, 0), max(box[1] - pad, 0)
        bottom, right = min(box[2] + pad, self.height), min(box[3] + pad, self.width)
        around = np.zeros((bottom - top, right - left), bool)
        around[box[0] - top:box[2] - top, box[1] - left:box[3] - left] = mask
        alpha = self.canvas.alpha((top, left, bottom, right))[0, 0].numpy()
        new = refine_edge(self.image[top:bottom, left:right], alpha, around, edge)
        changed = torch.from_numpy(new != alpha)
        if not changed.any():
            raise EditError("Nothing to refine here: the stroke does not cross the cutout's edge.")
        rows, cols = slice(top, bottom + 2 * m), slice(left, right + 2 * m)
        patch = _Patch(rows, cols, self._grab(rows, cols))
        a = torch.from_numpy(new)[changed]
        value = torch.zeros(3, len(a))
        value[tri.FOREGROUND], value[tri.BACKGROUND] = a, 1 - a
        self.canvas.probs[0, :, m + top:m + bottom, m + left:m + right][:, changed] = value
        return self._commit(patch, op)

    def _commit(self, patch: _Patch, op: dict) -> Change:
        """Record ``patch`` (its region now edited) as edit ``op``, dropping the redo steps."""
        patch.after = self._grab(patch.rows, patch.cols)
        del self._patches[self.version - self.base:], self.ops[self.version:]
        self._patches.append(patch)
        self.ops.append(op)
        self.version += 1
        self._trim()
        return Change(self._box(patch))

    def _box(self, patch: _Patch) -> Box:
        """Image pixels whose alpha ``patch`` may change: its region less the margin of context
        every patch carries on each side."""
        m = self.canvas.cfg.margin
        return (patch.rows.start, patch.cols.start, min(patch.rows.stop - 2 * m, self.height),
                min(patch.cols.stop - 2 * m, self.width))

    def _trim(self) -> None:
        """Drop the oldest undo steps while the history is over its byte budget."""
        held = self.history_nbytes()
        while self._patches and held > self.history_bytes:
            held -= self._patches.pop(0).nbytes
            self.base += 1

    def _restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        info = json.loads(meta["session"])
        cfg = edit_tiles(self.matter)
        if info["tiles"] != [cfg.tile, cfg.margin]:
            raise ValueError("The snapshot was made with another tile configuration.")
        h, w = self.image.shape[:2]
        self.canvas = TiledCanvas(self.image, lambda x: torch.zeros(1, 3, h, w), cfg)
        for name in ("probs", "alpha_r"):
            target = getattr(self.canvas, name)
            if tensors[name].shape != target.shape:
                raise ValueError("The snapshot does not fit this image.")
            target.copy_(tensors[name])
        for i, (r0, r1, c0, c1) in enumerate(info["boxes"]):
            pair = [(tensors[f"{i}.{k}.probs"], tensors[f"{i}.{k}.alpha_r"]) for k in ("before", "after")]
            self._patches.append(_Patch(slice(r0, r1), slice(c0, c1), *pair))
        self.ops, self.version, self.base = info["ops"], info["version"], info["base"]
        self._trim()

    def _grab(self, rows: slice, cols: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.canvas.probs[..., rows, cols].clone(), self.canvas.alpha_r[..., rows, cols].clone())

    def _restore(self, patch: _Patch, which: str) -> None:
        probs, alpha_r = getattr(patch, which)
        self.canvas.probs[..., patch.rows, patch.cols] = probs
        self.canvas.alpha_r[..., patch.rows, patch.cols] = alpha_r
