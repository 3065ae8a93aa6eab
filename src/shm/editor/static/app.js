// shm editor front end: plain JavaScript, no build step. Talks to /api/v1 (schema: /openapi.json).
//
// The page keeps the cutout as one RGBA buffer: the decontaminated foreground, fetched once per
// photo, with the alpha in its 4th channel. An edit answers with the box where alpha changed;
// the answer carries that box's alpha (or the page fetches it as raw bytes), the page writes it
// into the buffer and redraws only that box, so the wait after a stroke does not grow with the photo. Edits run one after another
// from a queue: a stroke made while another applies waits its turn and is never dropped.
// document.body.dataset.version is the version whose result is drawn, set after drawing.
"use strict";

const $ = (id) => document.getElementById(id);
const api = "/api/v1/sessions";
const LABELS = { keep: "Keep", erase: "Erase", refine: "Refine edge" };
const COLORS = { keep: "rgb(60,220,90)", erase: "rgb(255,80,80)", refine: "rgb(250,210,40)" };
const state = {
  id: null, name: "image", width: 0, height: 0, version: 0, tool: "keep",
  view: "checker", before: false, original: null, trimap: null, bgImage: null, rgba: null,
  zoom: 1, panX: 0, panY: 0, loading: false, queue: [], working: false, pending: [],
  history: { can_undo: false, can_redo: false },
};
const canvas = $("result"), ctx = canvas.getContext("2d");
const overlay = $("overlay"), octx = overlay.getContext("2d");
const cutout = document.createElement("canvas"), cctx = cutout.getContext("2d");
const viewport = $("viewport"), stage = $("stage"), brush = $("brush");

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = kind;
}

async function call(method, url, body) {
  const init = { method };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new Error("The editor server does not answer; is `shm serve` still running?");
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw Object.assign(new Error(data?.error || `The server answered ${res.status}.`),
    { status: res.status });
  return data;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("An image failed to load; try again."));
    img.src = url;
  });
}

// the cutout buffer ---------------------------------------------------------------------------
// An edit's answer carries the alpha of the box it changed (base64), or the page fetches it.
async function fetchAlpha([top, left, bottom, right]) {
  const url = `${api}/${state.id}/alpha.raw?top=${top}&left=${left}&bottom=${bottom}&right=${right}`;
  const res = await fetch(url);
  if (!res.ok) throw new Error((await res.json()).error || `The server answered ${res.status}.`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), version: Number(res.headers.get("X-Version")) };
}

function decode(base64) {
  const text = atob(base64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function putAlpha([top, left, bottom, right], bytes) {
  const d = state.rgba.data, w = state.width, bw = right - left;
  for (let y = top, k = 0; y < bottom; y++) {
    for (let i = (y * w + left) * 4 + 3, end = i + bw * 4; i < end; i += 4) d[i] = bytes[k++];
  }
  cctx.putImageData(state.rgba, 0, 0, left, top, bw, bottom - top);
}

async function loadSession() {
  const info = await call("GET", `${api}/${state.id}`);
  Object.assign(state, { name: info.name, width: info.width, height: info.height });
  const base = `${api}/${state.id}`, full = [0, 0, info.height, info.width];
  const [fg, original, alpha] = await Promise.all([
    loadImage(`${base}/foreground.png`), loadImage(`${base}/image.png`), fetchAlpha(full)]);
  cutout.width = canvas.width = overlay.width = info.width;
  cutout.height = canvas.height = overlay.height = info.height;
  cctx.drawImage(fg, 0, 0);
  state.rgba = cctx.getImageData(0, 0, info.width, info.height);
  putAlpha(full, alpha.bytes);
  state.original = original;
  state.trimap = state.view === "trimap" ? await loadImage(`${base}/trimap.png?v=${alpha.version}`) : null;
  $("download-png").href = `${base}/cutout.png?download=1`;
  $("download-alpha").href = `${base}/alpha.png?download=1`;
  viewport.classList.add("has-image");
  document.body.classList.remove("no-photo");
  fit();
  draw();
  state.version = alpha.version;
  document.body.dataset.session = state.id;
  document.body.dataset.version = String(alpha.version);
  state.history = info;
}

// drawing --------------------------------------------------------------------------------------
function draw(box) {
  const [top, left, bottom, right] = box || [0, 0, state.height, state.width];
  const w = right - left, h = bottom - top;
  const view = state.before ? "original" : state.view;
  canvas.classList.toggle("checker", view === "checker");
  if (view === "alpha") return drawAlpha(top, left, w, h);
  if (view === "trimap" && state.trimap) return drawTrimap();
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, w, h);
  ctx.clip();
  ctx.clearRect(left, top, w, h);
  if (view === "original") ctx.drawImage(state.original, left, top, w, h, left, top, w, h);
  else {
    drawBackground(ctx, state.width, state.height, view);
    ctx.drawImage(cutout, left, top, w, h, left, top, w, h);
  }
  ctx.restore();
}

function drawAlpha(top, left, w, h) {
  const out = ctx.createImageData(w, h), o = out.data, d = state.rgba.data;
  for (let y = 0, k = 0; y < h; y++) {
    for (let i = ((top + y) * state.width + left) * 4 + 3, x = 0; x < w; x++, i += 4, k += 4) {
      o[k] = o[k + 1] = o[k + 2] = d[i];
      o[k + 3] = 255;
    }
  }
  ctx.putImageData(out, left, top);
}

function drawBackground(c, w, h, view) {
  if (view === "color") {
    c.fillStyle = $("bg-color").value;
    c.fillRect(0, 0, w, h);
  } else if (view === "image" && state.bgImage) {
    const b = state.bgImage, s = Math.max(w / b.width, h / b.height);
    c.drawImage(b, (w - b.width * s) / 2, (h - b.height * s) / 2, b.width * s, b.height * s);
  }
}

function drawTrimap() {
  const { width: w, height: h } = state;
  ctx.drawImage(state.original, 0, 0);
  const photo = ctx.getImageData(0, 0, w, h);
  ctx.drawImage(state.trimap, 0, 0);
  const t = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < t.data.length; i += 4) {
    const v = t.data[i];
    const tint = v > 200 ? [60, 220, 90] : v > 60 ? [250, 210, 40] : [40, 40, 60];
    for (let c = 0; c < 3; c++) photo.data[i + c] = 0.5 * photo.data[i + c] + 0.5 * tint[c];
  }
  ctx.putImageData(photo, 0, 0);
}

function drawOverlay() {
  octx.clearRect(0, 0, overlay.width, overlay.height);
  for (const s of state.pending) paintStroke(s, 0);
  if (stroke) paintStroke(stroke, 0);
}

function paintStroke(s, from) {
  octx.strokeStyle = COLORS[s.tool];
  octx.lineWidth = s.size;
  octx.lineCap = octx.lineJoin = "round";
  octx.beginPath();
  const pts = s.points, start = Math.max(0, from - 1);
  octx.moveTo(pts[start][0], pts[start][1]);
  for (let i = start + 1; i < pts.length; i++) octx.lineTo(pts[i][0], pts[i][1]);
  if (pts.length - start === 1) octx.lineTo(pts[start][0] + 0.01, pts[start][1]);
  octx.stroke();
}

// view transform -------------------------------------------------------------------------------
function applyTransform() {
  stage.style.transform = `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
  stage.classList.toggle("pixelated", state.zoom > 1);
}

function fit() {
  const r = viewport.getBoundingClientRect();
  state.zoom = Math.min(r.width / state.width, r.height / state.height, 1) * 0.98;
  state.panX = (r.width - state.width * state.zoom) / 2;
  state.panY = (r.height - state.height * state.zoom) / 2;
  applyTransform();
}

function zoomAt(factor, cx, cy) {
  const z = Math.min(16, Math.max(0.05, state.zoom * factor));
  state.panX = cx - (cx - state.panX) * (z / state.zoom);
  state.panY = cy - (cy - state.panY) * (z / state.zoom);
  state.zoom = z;
  applyTransform();
}

// Undo, Redo and Reset also need something to take back (or bring back): set after the rest.
function updateButtons() {
  const ready = Boolean(state.id) && !state.loading, info = state.history;
  for (const el of document.querySelectorAll(".needs-photo")) el.disabled = !ready;
  for (const el of document.querySelectorAll("a.needs-photo")) el.classList.toggle("disabled", !ready);
  $("undo").disabled = !ready || !info.can_undo;
  $("redo").disabled = !ready || !info.can_redo;
  $("reset").disabled = !ready || !info.can_undo;
  for (const el of document.querySelectorAll("[data-tool]"))
    el.setAttribute("aria-pressed", String(el.dataset.tool === state.tool));
  viewport.classList.toggle("panning", state.tool === "pan");
  // invisible rather than hidden, so the toolbar keeps its layout when the tool changes
  $("edge-group").classList.toggle("invisible", state.tool !== "refine");
}

// the edit queue -------------------------------------------------------------------------------
function setWorking() {
  viewport.classList.toggle("working", state.working || state.loading);
}

function enqueue(job) {
  state.queue.push(job);
  if (!state.working) pump();
}

async function pump() {
  state.working = true;
  setWorking();
  while (state.queue.length) await state.queue.shift()();
  state.working = false;
  setWorking();
}

// Queue an edit; `since` is when the person asked for it (mouse-up or click), `done` its status.
function edit(path, body, label, since, done, stroke = null) {
  if (!state.id) return;
  if (stroke) state.pending.push(stroke);
  const id = state.id;
  enqueue(async () => {
    if (id !== state.id) return;  // another photo was opened meanwhile
    setStatus(label, "busy");
    try {
      const res = await call("POST", `${api}/${id}/${path}`, body);
      const box = res.box;
      const alpha = res.alpha ? { bytes: decode(res.alpha), version: res.version } : await fetchAlpha(box);
      if (alpha.version !== res.version) {  // edited elsewhere too (another tab): take it all
        await loadSession();
      } else {
        putAlpha(box, alpha.bytes);
        if (state.view === "trimap")
          state.trimap = await loadImage(`${api}/${id}/trimap.png?v=${res.version}`);
        draw(state.view === "trimap" ? null : box);
      }
      state.version = res.version;
      document.body.dataset.version = String(res.version);
      const waited = Math.round(performance.now() - since);
      document.body.dataset.waitedMs = String(waited);
      document.body.dataset.serverMs = String(res.ms);
      state.history = res;
      updateButtons();
      setStatus(`${res.note || done} Drawn ${waited} ms after ${stroke ? "mouse-up" : "the click"}.`);
    } catch (err) {
      setStatus(err.message, err.status === 409 ? "" : "error");  // 409: nothing to do, no fault
    } finally {
      if (stroke) {
        state.pending.splice(state.pending.indexOf(stroke), 1);
        drawOverlay();
      }
    }
  });
}

async function upload(file) {
  if (!file || state.loading) return;
  state.loading = true;
  state.queue.length = 0;
  setWorking();
  updateButtons();
  setStatus("Computing the automatic cutout…", "busy");
  try {
    const form = new FormData();
    form.append("image", file, file.name);
    const made = await call("POST", api, form);
    state.id = made.id;
    localStorage.setItem("shm-session", made.id);
    await loadSession();
    setStatus(`Automatic cutout ready (${made.width}×${made.height}). Paint to fix anything.`);
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    state.loading = false;
    setWorking();
    updateButtons();
  }
}

function toImage(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * (state.width / r.width), (ev.clientY - r.top) * (state.height / r.height)];
}

// painting and panning -------------------------------------------------------------------------
let stroke = null, drag = null, spaceDown = false;
viewport.addEventListener("pointerdown", (ev) => {
  if (!state.id || state.loading) return;
  if (state.tool === "pan" || spaceDown || ev.button === 1) {
    drag = { x: ev.clientX, y: ev.clientY, px: state.panX, py: state.panY };
  } else if (state.tool === "select" && ev.button === 0) {
    const remove = ev.shiftKey;
    edit("select", { points: [toImage(ev)], remove },
      remove ? "Removing the person under the cursor…" : "Selecting the subject…",
      ev.timeStamp, remove ? "Removed the person under the cursor." : "Kept the clicked person.");
    return;
  } else if (ev.button === 0) {
    stroke = { tool: state.tool, size: Number($("brush-size").value), points: [toImage(ev)] };
    if (stroke.tool === "refine") stroke.edge = Number($("edge-radius").value);
    if (stroke.tool === "keep" && ev.shiftKey) stroke.force = true;  // background too
    paintStroke(stroke, 0);
  } else return;
  viewport.setPointerCapture(ev.pointerId);
});
viewport.addEventListener("pointermove", (ev) => {
  moveBrush(ev);
  if (drag) {
    state.panX = drag.px + ev.clientX - drag.x;
    state.panY = drag.py + ev.clientY - drag.y;
    applyTransform();
  } else if (stroke) {
    stroke.points.push(toImage(ev));
    paintStroke(stroke, stroke.points.length - 1);
  }
});
viewport.addEventListener("pointerup", (ev) => {
  drag = null;
  if (!stroke) return;
  const s = stroke;
  stroke = null;
  const body = { tool: s.tool, size: s.size, points: s.points };
  if (s.edge) body.edge = s.edge;
  if (s.force) body.force = true;
  const label = s.force ? "Keep (everything under the brush)" : LABELS[s.tool];
  edit("strokes", body, `Applying ${label}…`, ev.timeStamp, `${label} applied.`, s);
});
viewport.addEventListener("pointerleave", () => (brush.hidden = true));

function moveBrush(ev) {
  const painting = state.id && ["keep", "erase", "refine"].includes(state.tool) && !spaceDown;
  brush.hidden = !painting;
  if (!painting) return;
  const r = viewport.getBoundingClientRect(), d = Number($("brush-size").value) * state.zoom;
  brush.style.width = brush.style.height = `${d}px`;
  brush.style.left = `${ev.clientX - r.left - d / 2}px`;
  brush.style.top = `${ev.clientY - r.top - d / 2}px`;
}

viewport.addEventListener("wheel", (ev) => {
  if (!state.id) return;
  ev.preventDefault();
  const r = viewport.getBoundingClientRect();
  zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
}, { passive: false });

// drag and drop
viewport.addEventListener("dragover", (ev) => { ev.preventDefault(); viewport.classList.add("dragging"); });
viewport.addEventListener("dragleave", () => viewport.classList.remove("dragging"));
viewport.addEventListener("drop", (ev) => {
  ev.preventDefault();
  viewport.classList.remove("dragging");
  upload(ev.dataTransfer.files[0]);
});

// controls -------------------------------------------------------------------------------------
$("upload").addEventListener("change", (ev) => {
  upload(ev.target.files[0]);
  ev.target.value = "";  // choosing the same file again is a change too
});
const HINTS = {
  keep: "Keep: paint over parts of the person that are missing; the edge follows the photo. Hold Shift to keep everything under the brush.",
  erase: "Erase: paint over what should not be in the cutout.",
  refine: "Refine edge: paint along hair or a soft edge; the edge radius sets how far it may move.",
  select: "Select subject: click a person to keep only them; Shift-click removes the person under the cursor.",
  pan: "Pan: drag to move the view (or hold Space with any tool).",
};
function chooseTool(tool) {
  state.tool = tool;
  updateButtons();
  if (state.id && !state.working) setStatus(HINTS[tool]);
}
for (const el of document.querySelectorAll("[data-tool]"))
  el.addEventListener("click", () => chooseTool(el.dataset.tool));
$("brush-size").addEventListener("input", (ev) => ($("brush-size-value").textContent = ev.target.value));
$("edge-radius").addEventListener("input", (ev) => ($("edge-radius-value").textContent = ev.target.value));
// With no edit queued, the buttons' state is the server's: say so instead of asking it.
function historyStep(path, possible, label, since, done, nothing) {
  if (!state.id) return;
  if (!state.working && !possible) setStatus(nothing);
  else edit(path, undefined, label, since, done);
}
const undo = (since) => historyStep("undo", state.history.can_undo, "Undoing…", since, "Undone.",
  "Nothing to undo yet.");
const redo = (since) => historyStep("redo", state.history.can_redo, "Redoing…", since, "Redone.",
  "Nothing to redo.");
$("undo").addEventListener("click", (ev) => undo(ev.timeStamp));
$("redo").addEventListener("click", (ev) => redo(ev.timeStamp));
$("reset").addEventListener("click", (ev) =>
  edit("reset", undefined, "Back to the automatic result…", ev.timeStamp,
    "Back to the automatic result (Undo brings your edits back)."));
const VIEWS = {
  checker: "Showing the cutout on a checkerboard.", color: "Showing the cutout on a colour.",
  image: "Showing the cutout on your background image.", original: "Showing the original photo.",
  alpha: "Showing the alpha matte (white: person).", trimap: "Showing the trimap: green person, yellow unknown, dark background.",
};
$("view-mode").addEventListener("change", async (ev) => {
  state.view = ev.target.value;
  ev.target.blur();
  if (!state.id) return;
  setStatus(state.view === "image" && !state.bgImage ? "Choose a background image with Background…." : VIEWS[state.view]);
  if (state.view === "trimap")
    state.trimap = await loadImage(`${api}/${state.id}/trimap.png?v=${state.version}`);
  draw();
});
$("bg-color").addEventListener("input", () => {
  $("view-mode").value = state.view = "color";
  if (state.id) { setStatus(VIEWS.color); draw(); }
});
$("bg-image").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  state.bgImage = await loadImage(URL.createObjectURL(file));
  $("view-mode").value = state.view = "image";
  if (state.id) { setStatus(VIEWS.image); draw(); }
});
$("before-after").addEventListener("click", (ev) => {
  state.before = !state.before;
  ev.currentTarget.setAttribute("aria-pressed", String(state.before));
  if (state.id) draw();
});
$("zoom-in").addEventListener("click", () => { const r = viewport.getBoundingClientRect(); zoomAt(1.25, r.width / 2, r.height / 2); });
$("zoom-out").addEventListener("click", () => { const r = viewport.getBoundingClientRect(); zoomAt(0.8, r.width / 2, r.height / 2); });
$("zoom-fit").addEventListener("click", fit);
$("download-jpg").addEventListener("click", () => {
  if (!state.id) return;
  const c = document.createElement("canvas");
  c.width = state.width;
  c.height = state.height;
  const x = c.getContext("2d");
  x.fillStyle = state.view === "color" ? $("bg-color").value : "#ffffff";
  x.fillRect(0, 0, c.width, c.height);
  if (state.view === "image") drawBackground(x, c.width, c.height, "image");
  x.drawImage(cutout, 0, 0);
  c.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${state.name}-composite.jpg`;
    a.click();
  }, "image/jpeg", 0.95);
});
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (t.tagName === "SELECT" || t.tagName === "TEXTAREA" || t.isContentEditable ||
      (t.tagName === "INPUT" && t.type !== "range")) return;
  const key = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && key === "z") {
    ev.preventDefault();
    if (ev.shiftKey) redo(ev.timeStamp); else undo(ev.timeStamp);
  } else if ((ev.ctrlKey || ev.metaKey) && key === "y") {
    ev.preventDefault();
    redo(ev.timeStamp);
  } else if (ev.key === " ") {
    spaceDown = true;
    viewport.classList.add("panning");
    ev.preventDefault();
  } else if (!ev.ctrlKey && !ev.metaKey && !ev.altKey && state.id) {
    const tools = { k: "keep", e: "erase", r: "refine", s: "select" };
    if (tools[key]) chooseTool(tools[key]);
    else if (key === "b") $("before-after").click();
    else if (key === "+" || key === "=") $("zoom-in").click();
    else if (key === "-") $("zoom-out").click();
    else if (key === "0") fit();
  }
});
document.addEventListener("keyup", (ev) => {
  if (ev.key === " ") { spaceDown = false; viewport.classList.toggle("panning", state.tool === "pan"); }
});
window.addEventListener("resize", () => state.id && fit());

// resume the last session after a reload
(async () => {
  updateButtons();
  const saved = localStorage.getItem("shm-session");
  if (!saved) return;
  state.id = saved;
  state.loading = true;
  setWorking();
  setStatus("Resuming your last photo…", "busy");
  try {
    await loadSession();
    setStatus("Resumed where you left off.");
  } catch {
    state.id = null;
    localStorage.removeItem("shm-session");
    viewport.classList.remove("has-image");
    document.body.classList.add("no-photo");
    setStatus("Drop a photo of people to start.");
  } finally {
    state.loading = false;
    setWorking();
    updateButtons();
  }
})();
