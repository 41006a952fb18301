// The captioning page: send each image to every loaded model (POST /v1/captions, model=all), show the captions side
// by side with their latency, and for Show-Attend-Tell models a per-word attention heat map (POST /v1/attention).
"use strict";

const state = { models: [] };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("aria-") || key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function headers() {
  const key = $("apikey").value || sessionStorage.getItem("captionkit-key") || "";
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, body) {
  const response = await fetch(path, { method: body ? "POST" : "GET", body, headers: headers() });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    if (response.status === 401) $("keybox").open = true;
    const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
    throw new Error(message);
  }
  return data;
}

function showPageError(message) {
  const box = $("page-error");
  box.textContent = message;
  box.hidden = !message;
}

async function loadModels() {
  try {
    const data = await api("/v1/models");
    state.models = data.models;
    $("status").textContent = data.models.length + " model(s): " + data.models.map((m) => m.name).join(", ");
    showPageError("");
  } catch (err) {
    $("status").textContent = "Models not available";
    showPageError(err.message);
    if (/loading/i.test(err.message)) setTimeout(loadModels, 2000);
  }
}

function beams() {
  const value = parseInt($("beams").value, 10);
  return Number.isFinite(value) && value >= 1 ? String(value) : "1";
}

async function captionFile(file) {
  const url = URL.createObjectURL(file);
  const img = el("img", { src: url, alt: "uploaded image " + file.name });
  img.addEventListener("error", () => { img.hidden = true; });  // not an image the browser can show either
  const thumb = el("div", { class: "thumb" }, img, el("p", { class: "name" }, file.name));
  const out = el("div", { class: "out" }, el("p", {}, "Captioning…"));
  const card = el("article", { class: "card", "aria-label": file.name }, thumb, out);
  $("results").prepend(card);
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("model", "all");
  form.append("num_beams", beams());
  try {
    const data = await api("/v1/captions", form);
    out.replaceChildren(captionTable(data, file, img, thumb));
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

function captionTable(data, file, img, thumb) {
  const body = el("tbody");
  for (const entry of data.captions) {
    const model = state.models.find((m) => m.name === entry.model);
    const ms = data.timing_ms.models[entry.model];
    const cells = [el("th", { scope: "row" }, entry.model), el("td", { class: "caption" }, entry.caption),
                   el("td", { class: "latency" }, Math.round(ms) + " ms")];
    const row = el("tr", { "data-model": entry.model }, ...cells);
    if (model && model.attention) {
      const toggle = el("button", { type: "button", class: "attention-toggle", "aria-pressed": "false" },
                        "Show attention");
      toggle.addEventListener("click", () => toggleAttention(toggle, entry.model, file, img, thumb));
      cells[1].append(el("div", { class: "words", "data-for": entry.model }), toggle);
    }
    body.append(row);
  }
  const head = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Model"),
                                  el("th", { scope: "col" }, "Caption"), el("th", { scope: "col" }, "Latency")));
  return el("table", {}, head, body);
}

async function toggleAttention(toggle, modelName, file, img, thumb) {
  const words = toggle.parentElement.querySelector(".words");
  const old = thumb.querySelector("canvas");
  if (toggle.getAttribute("aria-pressed") === "true") {
    toggle.setAttribute("aria-pressed", "false");
    toggle.textContent = "Show attention";
    words.replaceChildren();
    if (old) old.remove();
    img.hidden = false;
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("model", modelName);
  form.append("num_beams", beams());
  try {
    const data = await api("/v1/attention?format=json", form);
    toggle.setAttribute("aria-pressed", "true");
    toggle.textContent = "Hide attention";
    const canvas = el("canvas", { width: 224, height: 224, class: "heat", "aria-label": "attention heat map" });
    if (old) old.remove();
    img.hidden = true;
    thumb.prepend(canvas);
    const buttons = data.words.map((word, t) => {
      const button = el("button", { type: "button", "aria-pressed": "false", "data-step": String(t) }, word);
      button.addEventListener("click", () => select(t));
      button.addEventListener("focus", () => select(t));
      return button;
    });
    words.replaceChildren(...buttons);
    const select = (t) => {
      buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(i === t)));
      drawHeat(canvas, img, data, t);
    };
    if (buttons.length) select(0); else drawHeat(canvas, img, data, -1);
  } catch (err) {
    words.replaceChildren(el("span", { class: "error", role: "alert" }, err.message));
  }
}

function drawHeat(canvas, img, data, t) {
  // The encoder saw the central square `crop` of the image; the grid of weights covers exactly that square.
  const ctx = canvas.getContext("2d");
  const [left, top, side] = data.crop;
  ctx.drawImage(img, left, top, side, side, 0, 0, canvas.width, canvas.height);
  if (t < 0) return;
  const [rows, cols] = data.grid;
  const weights = data.weights[t];
  const peak = Math.max(...weights) || 1;
  const grid = document.createElement("canvas");
  grid.width = cols;
  grid.height = rows;
  const cells = grid.getContext("2d");
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const w = weights[r * cols + c] / peak;
      // blue where the model barely looked, through yellow to red where it looked most (like 'jet')
      const red = Math.round(255 * Math.min(1, 2 * w)), blue = Math.round(255 * Math.min(1, 2 * (1 - w)));
      const green = Math.round(255 * (1 - Math.abs(2 * w - 1)));
      cells.fillStyle = "rgba(" + red + "," + green + "," + blue + ",0.55)";
      cells.fillRect(c, r, 1, 1);
    }
  }
  ctx.imageSmoothingEnabled = true;  // bilinear upsampling of the coarse grid, as the PNG endpoint does bicubically
  ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
}

function handleFiles(files) {
  showPageError("");
  for (const file of files) captionFile(file);
}

document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  const key = sessionStorage.getItem("captionkit-key");
  if (key) $("apikey").value = key;
  $("apikey").addEventListener("change", () => {
    sessionStorage.setItem("captionkit-key", $("apikey").value);
    loadModels();
  });
  $("file").addEventListener("change", (event) => {
    handleFiles(event.target.files);
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    handleFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = [...event.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) handleFiles(files);
  });
  loadModels();
});
