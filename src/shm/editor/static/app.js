// shm editor front end: plain JavaScript, no build step. Talks to /api/v1 (see /docs).
"use strict";

const $ = (id) => document.getElementById(id);
const api = "/api/v1/sessions";
const state = {
  id: null, name: "image", width: 0, height: 0, version: 0, tool: "keep",
  view: "checker", before: false, images: {}, bgImage: null,
  zoom: 1, panX: 0, panY: 0, busy: false,
};
const canvas = $("result"), ctx = canvas.getContext("2d");
const overlay = $("overlay"), octx = overlay.getContext("2d");
const viewport = $("viewport"), stage = $("stage");

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
  const res = await fetch(url, init);
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error(data?.error || `The server answered ${res.status}.`);
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

async function refresh() {
  const v = `?v=${Date.now()}`;
  const base = `${api}/${state.id}`;
  const wanted = ["cutout", "alpha"];
  if (state.view === "trimap") wanted.push("trimap");
  const loaded = await Promise.all(wanted.map((k) => loadImage(`${base}/${k}.png${v}`)));
  wanted.forEach((k, i) => (state.images[k] = loaded[i]));
  if (state.view !== "trimap") delete state.images.trimap;
  if (!state.images.original) state.images.original = await loadImage(`${base}/image.png`);
  $("download-png").href = `${base}/cutout.png?download=1`;
  $("download-alpha").href = `${base}/alpha.png?download=1`;
  document.body.dataset.session = state.id;
  document.body.dataset.version = String(state.version);
  draw();
}

function draw() {
  const { width: w, height: h } = state;
  if (!w) return;
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = overlay.width = w;
    canvas.height = overlay.height = h;
  }
  ctx.clearRect(0, 0, w, h);
  const view = state.before ? "original" : state.view;
  canvas.classList.toggle("checker", view === "checker");
  const im = state.images;
  if (view === "original") ctx.drawImage(im.original, 0, 0);
  else if (view === "alpha") ctx.drawImage(im.alpha, 0, 0);
  else if (view === "trimap" && im.trimap) drawTrimap(im.original, im.trimap);
  else {
    drawBackground(ctx, w, h, view);
    ctx.drawImage(im.cutout, 0, 0);
  }
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

function drawTrimap(original, trimap) {
  const { width: w, height: h } = state;
  ctx.drawImage(original, 0, 0);
  const photo = ctx.getImageData(0, 0, w, h);
  ctx.drawImage(trimap, 0, 0);
  const t = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < t.data.length; i += 4) {
    const v = t.data[i];
    const tint = v > 200 ? [60, 220, 90] : v > 60 ? [250, 210, 40] : [40, 40, 60];
    for (let c = 0; c < 3; c++) photo.data[i + c] = 0.5 * photo.data[i + c] + 0.5 * tint[c];
  }
  ctx.putImageData(photo, 0, 0);
}

function applyTransform() {
  stage.style.transform = `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
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

function updateButtons(info) {
  $("undo").disabled = !info.can_undo;
  $("redo").disabled = !info.can_redo;
  $("reset").disabled = !info.can_undo;
  for (const el of document.querySelectorAll("[data-tool]"))
    el.setAttribute("aria-pressed", String(el.dataset.tool === state.tool));
  viewport.classList.toggle("panning", state.tool === "pan");
}

async function syncInfo() {
  const info = await call("GET", `${api}/${state.id}`);
  Object.assign(state, { name: info.name, width: info.width, height: info.height, version: info.version });
  updateButtons(info);
  return info;
}

async function run(label, fn) {
  if (state.busy) return;
  state.busy = true;
  setStatus(label, "busy");
  try {
    const msg = await fn();
    setStatus(msg || "Ready.");
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    state.busy = false;
  }
}

async function upload(file) {
  if (!file) return;
  await run("Computing the automatic cutout…", async () => {
    const form = new FormData();
    form.append("image", file, file.name);
    const made = await call("POST", api, form);
    state.id = made.id;
    state.images = {};
    localStorage.setItem("shm-session", made.id);
    await syncInfo();
    await refresh();
    fit();
    viewport.classList.add("has-image");
    return `Automatic cutout ready (${made.width}×${made.height}). Paint to fix anything.`;
  });
}

async function edit(path, body, label) {
  if (!state.id) return;
  await run(label, async () => {
    const res = await call("POST", `${api}/${state.id}/${path}`, body);
    await syncInfo();
    await refresh();
    return `Updated in ${Math.round(res.ms)} ms.`;
  });
}

function toImage(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * (state.width / r.width), (ev.clientY - r.top) * (state.height / r.height)];
}

// painting and panning
let stroke = null, drag = null, spaceDown = false;
viewport.addEventListener("pointerdown", (ev) => {
  if (!state.id || state.busy) return;
  if (state.tool === "pan" || spaceDown || ev.button === 1) {
    drag = { x: ev.clientX, y: ev.clientY, px: state.panX, py: state.panY };
  } else if (state.tool === "select") {
    edit("select", { points: [toImage(ev)] }, "Selecting the subject…");
  } else if (ev.button === 0) {
    stroke = { tool: state.tool, size: Number($("brush-size").value), points: [toImage(ev)] };
    paintPreview();
  } else return;
  viewport.setPointerCapture(ev.pointerId);
});
viewport.addEventListener("pointermove", (ev) => {
  if (drag) {
    state.panX = drag.px + ev.clientX - drag.x;
    state.panY = drag.py + ev.clientY - drag.y;
    applyTransform();
  } else if (stroke) {
    stroke.points.push(toImage(ev));
    paintPreview();
  }
});
viewport.addEventListener("pointerup", () => {
  drag = null;
  if (!stroke) return;
  const s = stroke;
  stroke = null;
  edit("strokes", s, `Applying ${s.tool}…`).then(() => octx.clearRect(0, 0, overlay.width, overlay.height));
});
function paintPreview() {
  const colors = { keep: "rgba(60,220,90,.45)", erase: "rgba(255,80,80,.45)", refine: "rgba(250,210,40,.45)" };
  octx.clearRect(0, 0, overlay.width, overlay.height);
  octx.strokeStyle = colors[stroke.tool];
  octx.lineWidth = stroke.size;
  octx.lineCap = octx.lineJoin = "round";
  octx.beginPath();
  stroke.points.forEach(([x, y], i) => (i ? octx.lineTo(x, y) : octx.moveTo(x, y)));
  if (stroke.points.length === 1) octx.lineTo(stroke.points[0][0] + 0.01, stroke.points[0][1]);
  octx.stroke();
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

// controls
$("upload").addEventListener("change", (ev) => upload(ev.target.files[0]));
for (const el of document.querySelectorAll("[data-tool]"))
  el.addEventListener("click", () => { state.tool = el.dataset.tool; updateButtons({
    can_undo: !$("undo").disabled, can_redo: !$("redo").disabled }); });
$("brush-size").addEventListener("input", (ev) => ($("brush-size-value").textContent = ev.target.value));
$("undo").addEventListener("click", () => edit("undo", undefined, "Undoing…"));
$("redo").addEventListener("click", () => edit("redo", undefined, "Redoing…"));
$("reset").addEventListener("click", () => edit("reset", undefined, "Back to the automatic result…"));
$("view-mode").addEventListener("change", async (ev) => {
  state.view = ev.target.value;
  if (state.view === "image" && !state.bgImage) setStatus("Choose a background image with Background….");
  if (state.id) await refresh();
});
$("bg-color").addEventListener("input", () => { $("view-mode").value = state.view = "color"; draw(); });
$("bg-image").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  state.bgImage = await loadImage(URL.createObjectURL(file));
  $("view-mode").value = state.view = "image";
  draw();
});
$("before-after").addEventListener("click", (ev) => {
  state.before = !state.before;
  ev.target.setAttribute("aria-pressed", String(state.before));
  draw();
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
  x.drawImage(state.images.cutout, 0, 0);
  c.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${state.name}-composite.jpg`;
    a.click();
  }, "image/jpeg", 0.95);
});
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" && ev.target.type !== "range") return;
  const key = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && key === "z") {
    ev.preventDefault();
    edit(ev.shiftKey ? "redo" : "undo", undefined, ev.shiftKey ? "Redoing…" : "Undoing…");
  } else if ((ev.ctrlKey || ev.metaKey) && key === "y") {
    ev.preventDefault();
    edit("redo", undefined, "Redoing…");
  } else if (ev.key === " ") { spaceDown = true; viewport.classList.add("panning"); }
  else if (!ev.ctrlKey && !ev.metaKey) {
    const tools = { k: "keep", e: "erase", r: "refine", s: "select" };
    if (tools[key]) document.querySelector(`[data-tool=${tools[key]}]`).click();
    if (key === "b") $("before-after").click();
    if (key === "+" || key === "=") $("zoom-in").click();
    if (key === "-") $("zoom-out").click();
    if (key === "0") fit();
  }
});
document.addEventListener("keyup", (ev) => {
  if (ev.key === " ") { spaceDown = false; viewport.classList.toggle("panning", state.tool === "pan"); }
});
window.addEventListener("resize", () => state.id && fit());

// resume the last session after a reload
(async () => {
  updateButtons({ can_undo: false, can_redo: false });
  const saved = localStorage.getItem("shm-session");
  if (!saved) return;
  state.id = saved;
  try {
    await run("Resuming your last photo…", async () => {
      await syncInfo();
      await refresh();
      fit();
      viewport.classList.add("has-image");
      return "Resumed where you left off.";
    });
  } finally {
    if (!state.width) { state.id = null; localStorage.removeItem("shm-session"); }
  }
})();
