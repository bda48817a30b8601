"use strict";
// Nothing personal is kept in the browser: the form and the captures are cleared after each
// submission, and nothing is written to local storage. The session is an HttpOnly cookie.
const $ = (id) => document.getElementById(id);
const captures = {};       // slot -> capture id
let recording = null;      // {id, timer, ends}
let recordingId = null;    // a finished recording's id
const STEPS = ["queued", "creating", "created", "evidences_sent", "video_sent", "in_review"];

// Every request is same-origin and, when it changes something, JSON: the API refuses anything
// else (a page of another origin cannot send either).
async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body === undefined ? {} : body); }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => null);
  if (r.status === 401) { openLogin(); }
  return { status: r.status, data };
}

function openLogin() { $("login").classList.add("open"); $("token").focus(); }

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("POST", "/v1/session", { token: $("token").value });
  $("token").value = "";
  if (r.status === 200) { $("login").classList.remove("open"); start(); }
  else if (r.status === 429) { $("login-error").textContent = (r.data && r.data.message) || "Too many wrong tokens; wait and try again."; }
  else { $("login-error").textContent = "Wrong token."; }
});

// Logging out ends the session on the daemon (the cookie alone no longer opens anything).
$("logout").addEventListener("click", async () => {
  await api("DELETE", "/v1/session");
  location.reload();
});

function startPreviews() {
  for (const role of ["document", "face"]) { $("preview-" + role).src = "/v1/cameras/" + role + "/preview.mjpg"; }
}

async function refreshStatus() {
  const r = await api("GET", "/v1/status");
  if (r.status !== 200) return;
  const s = r.data;
  $("banner").classList.toggle("offline", !s.online);
  $("link").textContent = s.online ? "online" : "OFFLINE — evidence is kept and sent later";
  $("pending").textContent = "pending: " + s.pending;
  $("oldest").textContent = "oldest: " + (s.oldest_pending_secs == null ? "–" : s.oldest_pending_secs + " s");
}

function renderRow(e) {
  let row = document.querySelector('#queue tr[data-id="' + e.id + '"]');
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = e.id;
    row.innerHTML = "<td></td><td class='state'></td><td><progress max='" + (STEPS.length - 1) + "'></progress></td><td class='attempts'></td><td class='error'></td><td></td>";
    row.cells[0].textContent = e.id.slice(0, 8);
    $("queue").prepend(row);
  }
  row.querySelector(".state").textContent = e.state;
  const step = STEPS.indexOf(e.state);
  row.querySelector("progress").value = step < 0 ? STEPS.length - 1 : step;
  row.querySelector(".attempts").textContent = e.attempts;
  row.querySelector(".error").textContent = e.last_error || "";
  const action = row.cells[5];
  action.textContent = "";
  if (e.state === "failed") {
    const b = document.createElement("button");
    b.textContent = "Retry";
    b.addEventListener("click", async () => { await api("POST", "/v1/enrollments/" + e.id + "/retry"); });
    action.append(b);
  }
}

async function refreshQueue() {
  const r = await api("GET", "/v1/enrollments");
  if (r.status === 200) r.data.forEach(renderRow);
}

function listen() {
  const events = new EventSource("/v1/events");
  events.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.type === "enrollment") { renderRow(e); refreshStatus(); }
    if (e.type === "link") refreshStatus();
    if (e.type === "upload") {
      const bar = document.querySelector('#queue tr[data-id="' + e.id + '"] progress');
      if (bar) { bar.max = e.total_bytes; bar.value = e.sent_bytes; bar.title = "video " + Math.round(100 * e.sent_bytes / e.total_bytes) + "% sent"; }
    }
  };
}

// The document photo is cut from the front around the face found there: it follows the front.
function showPhoto(photo, reason) {
  const shot = document.querySelector('.shot[data-slot="document_photo"]');
  const img = shot.querySelector("img"), verdict = shot.querySelector(".verdict");
  if (photo) {
    captures.document_photo = photo.id;
    img.src = photo.thumbnail;
    img.alt = "Document photo, cut from the front";
    verdict.textContent = "✓ cut from the front";
    verdict.className = "verdict pass";
    shot.dataset.taken = "pass";
  } else {
    delete captures.document_photo;
    img.removeAttribute("src");
    img.alt = "Document photo, not cut yet";
    verdict.textContent = reason || "";
    verdict.className = "verdict retake";
    delete shot.dataset.taken;
  }
}

for (const shot of document.querySelectorAll(".shot:not(.cut)")) {
  const button = shot.querySelector("button");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const verdict = shot.querySelector(".verdict");
    verdict.textContent = "capturing…";
    const r = await api("POST", "/v1/captures/still", { role: shot.dataset.role, kind: shot.dataset.slot });
    button.disabled = false;
    if (r.status !== 200) { verdict.textContent = (r.data && r.data.message) || "capture failed"; verdict.className = "verdict retake"; return; }
    const img = shot.querySelector("img");
    // A retake is not kept by the capture service: only a still that passed has a thumbnail.
    if (r.data.thumbnail) img.src = r.data.thumbnail; else img.removeAttribute("src");
    img.alt = button.textContent + ", taken: " + r.data.verdict;
    if (r.data.verdict === "pass") {
      captures[shot.dataset.slot] = r.data.id;
      verdict.textContent = "✓ pass";
      verdict.className = "verdict pass";
    } else {
      delete captures[shot.dataset.slot];
      verdict.textContent = "Retake: " + r.data.reasons.join("; ");
      verdict.className = "verdict retake";
    }
    shot.dataset.taken = r.data.verdict;
    // A front that passes has a face to cut (one without is a retake, saying so).
    if (shot.dataset.slot === "document_front") {
      showPhoto(r.data.verdict === "pass" ? r.data.photo : null, r.data.verdict === "pass" ? "" : "cut from the front once it passes");
    }
  });
}

$("record").addEventListener("click", async () => {
  const seconds = 10;
  const r = await api("POST", "/v1/recordings", { max_seconds: seconds });
  if (r.status !== 201) { $("video-result").textContent = (r.data && r.data.message) || "recording failed"; return; }
  const ends = Date.now() + seconds * 1000;
  recording = { id: r.data.id, ends, timer: setInterval(() => {
    const left = Math.max(0, Math.ceil((ends - Date.now()) / 1000));
    $("countdown").textContent = "recording… " + left + " s left";
    if (left === 0) stopRecording();
  }, 250) };
  $("record").disabled = true; $("stop").disabled = false;
  $("video-result").textContent = "";
});

async function stopRecording() {
  if (!recording) return;
  const rec = recording; recording = null;
  clearInterval(rec.timer);
  $("stop").disabled = true;
  const r = await api("POST", "/v1/recordings/" + rec.id + "/stop");
  $("record").disabled = false;
  $("countdown").textContent = "";
  if (r.status === 200 && r.data.frames > 0) {
    recordingId = rec.id;
    $("video-result").textContent = "✓ " + r.data.duration_secs.toFixed(1) + " s recorded (" + r.data.frames + " frames)";
  } else {
    $("video-result").textContent = "Record again: " + ((r.data && r.data.message) || "no frames");
  }
}
$("stop").addEventListener("click", stopRecording);

function manifest() {
  let ocr = {
    given_name: $("given_name").value, surname_1: $("surname_1").value,
    serial_number: $("serial_number").value, id_document_type: $("doc_type").value,
    id_document_country: $("doc_country").value.toUpperCase(),
  };
  if ($("surname_2").value) ocr.surname_2 = $("surname_2").value;
  if ($("ocr_json").value.trim()) ocr = Object.assign(ocr, JSON.parse($("ocr_json").value));
  const images = {};
  for (const [slot, id] of Object.entries(captures)) images[slot] = { capture: id };
  return {
    customer: { mobile_phone_number: $("phone").value.trim(), email: $("email").value.trim() },
    acceptance: { description: "The customer accepts the terms and the privacy policy", date: Date.now(), "user-agent": "kiosk-agent operator page" },
    ocr_data: ocr,
    security_checks: { liveliness: $("liveliness").checked, documents_match: $("documents_match").checked },
    similarity_level: Number($("similarity").value),
    images,
    video: recordingId ? { recording: recordingId } : undefined,
  };
}

$("customer").addEventListener("submit", async (e) => {
  e.preventDefault();
  let body;
  try { body = manifest(); } catch (err) { $("message").textContent = "The OCR JSON is not valid JSON."; return; }
  $("submit").disabled = true;
  $("message").textContent = "Submitting…";
  const r = await api("POST", "/v1/enrollments", body);
  $("submit").disabled = false;
  if (r.status === 202) {
    $("message").textContent = "Queued: " + r.data.id.slice(0, 8) + ". The evidence is stored encrypted and sent when online.";
    clearAll();
    refreshQueue();
  } else {
    const field = r.data && r.data.field ? r.data.field + ": " : "";
    $("message").textContent = "Not queued — " + field + ((r.data && r.data.message) || "error " + r.status);
  }
});

function clearAll() {
  $("customer").reset();
  for (const k of Object.keys(captures)) delete captures[k];
  recordingId = null;
  $("video-result").textContent = "";
  for (const shot of document.querySelectorAll(".shot")) {
    const img = shot.querySelector("img");
    img.removeAttribute("src");
    img.alt = (shot.dataset.label || shot.querySelector("button").textContent) + ", not taken yet";
    shot.querySelector(".verdict").textContent = "";
    delete shot.dataset.taken;
  }
}

async function start() {
  const r = await api("GET", "/v1/status");
  if (r.status === 401) return;
  startPreviews();
  refreshStatus();
  refreshQueue();
  listen();
  setInterval(refreshStatus, 5000);
}
start();
