// vitfas liveness page: send an image (file or webcam snapshot) to POST /v1/liveness and
// show the score, the face boxes and the attention overlay the API returns.
"use strict";

const $ = (id) => document.getElementById(id);
let stream = null;

function showError(msg) {
  $("error").textContent = msg;
  $("error").hidden = !msg;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/model");
    const m = await r.json();
    $("model").textContent = `model ${m.model_id} · classes ${m.class_names.join("/")} · ` +
      `threshold ${Number(m.threshold).toFixed(4)} (${m.threshold_source})`;
    document.body.dataset.ready = "1";
  } catch (e) {
    $("model").textContent = "model information unavailable";
  }
}

function drawResult(bitmap, body) {
  const canvas = $("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const lw = Math.max(2, Math.round(Math.min(bitmap.width, bitmap.height) / 150));
  ctx.font = `${Math.max(14, lw * 8)}px system-ui, sans-serif`;
  body.faces.forEach((f, i) => {
    const [x0, y0, x1, y1] = f.box;
    const colour = f.decision === "live" ? "#1e8e3e" : "#c5221f";
    ctx.lineWidth = lw;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
    const label = `${i}: ${f.decision} ${f.score.toFixed(3)}`;
    const tw = ctx.measureText(label).width;
    ctx.fillStyle = colour;
    ctx.fillRect(x0, Math.max(0, y0), tw + 2 * lw, lw * 10);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x0 + lw, Math.max(0, y0) + lw * 8);
  });
}

function showFaces(body) {
  const box = $("faces");
  box.replaceChildren();
  body.faces.forEach((f, i) => {
    if (!f.explain_png) return;
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "overlay";
    img.alt = `attention overlay, face ${i}`;
    img.src = "data:image/png;base64," + f.explain_png;
    const cap = document.createElement("figcaption");
    cap.textContent = `face ${i}: attention rollout, P(live) ${f.score.toFixed(4)}`;
    fig.append(img, cap);
    box.append(fig);
  });
}

async function send(blob, name) {
  showError("");
  $("status").textContent = `scoring ${name}…`;
  const form = new FormData();
  form.append("file", blob, name);
  const url = "/v1/liveness" + ($("explain").checked ? "?explain=1" : "");
  let body;
  try {
    const r = await fetch(url, { method: "POST", body: form });
    body = await r.json();
    if (!r.ok) {
      $("status").textContent = "";
      showError(`${r.status}: ${typeof body.detail === "string" ? body.detail
                                                              : JSON.stringify(body.detail)}`);
      return;
    }
  } catch (e) {
    $("status").textContent = "";
    showError(`request failed: ${e}`);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
  } catch (e) {
    bitmap = null;
  }
  $("result").hidden = false;
  const dec = $("decision");
  dec.textContent = body.decision.replace("_", " ");
  dec.className = body.decision === "live" ? "live"
    : body.decision === "no_face" ? "no_face" : "spoof";
  const score = $("score");
  score.textContent = body.score === null ? "–" : body.score.toFixed(4);
  score.dataset.score = body.score === null ? "" : String(body.score);
  $("threshold").textContent = Number(body.threshold).toFixed(4);
  $("latency").textContent = body.latency_ms.toFixed(0);
  if (bitmap) drawResult(bitmap, body);
  showFaces(body);
  $("status").textContent = `${name}: ${body.faces.length} face(s), model ${body.model_id}` +
    (body.explain_error ? ` (no attention overlay: ${body.explain_error})` : "");
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
}

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) send(f, f.name);
});

$("camera").addEventListener("click", async () => {
  showError("");
  if (stream) {
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("video").hidden = true;
    $("snap").disabled = true;
    $("camera").textContent = "Use the webcam";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    showError(`no webcam: ${e.message || e}`);
    return;
  }
  $("video").srcObject = stream;
  $("video").hidden = false;
  $("snap").disabled = false;
  $("camera").textContent = "Stop the webcam";
});

$("snap").addEventListener("click", () => {
  const v = $("video");
  if (!v.videoWidth) return;
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  c.toBlob((b) => send(b, "snapshot.jpg"), "image/jpeg", 0.92);
});

loadModel();
