"use strict";
// Nothing personal is kept in the browser: the form and the captures are cleared after each
// submission, and nothing is written to local storage. The session is an HttpOnly cookie.
const $ = (id) => document.getElementById(id);
const captures = {};       // slot -> capture id
let recording = null;      // {id, timer, ends}
let recordingId = null;    // a finished recording's id
const STEPS = ["queued", "creating", "created", "evidences_sent", "video_sent", "in_review"];
// Each state in words, for the operator.
const IN_WORDS = {
  queued: "waiting to be sent", creating: "creating the request", created: "request created; sending the images",
  evidences_sent: "images sent; sending the video", video_sent: "video sent; waiting for the server",
  in_review: "delivered: in review", approved: "approved", signed: "signed", failed: "failed",
  cancelled: "cancelled", refused: "refused by the reviewer",
};
const DONE = ["in_review", "approved", "signed"];

// Every request is same-origin and, when it changes something, JSON: the API refuses anything
// else (a page of another origin cannot send either). Every request has a time limit; one that
// gets no answer reads as status 0 with a message for people, and marks the agent as down.
async function api(method, path, body, timeoutMs) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body === undefined ? {} : body); }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs || 15000);
  init.signal = abort.signal;
  try {
    const r = await fetch(path, init);
    const data = await r.json().catch(() => null);
    agentUp();
    if (r.status === 401) { openLogin(); }
    return { status: r.status, data };
  } catch (err) {
    agentDown();
    return { status: 0, data: { message: "The agent did not answer. Check that kiosk-agent is running; this page reconnects by itself." } };
  } finally {
    clearTimeout(timer);
  }
}

// The agent's own state in the banner, apart from the server link: a status read every 2 s is
// its heartbeat; missing one says "not responding" with the time, and its return brings the
// previews, the queue and the event stream back.
let agentDownSince = null;
let events = null;
function agentDown() {
  if (agentDownSince) return;
  agentDownSince = new Date();
  $("agent").textContent = "agent not responding since " + agentDownSince.toLocaleTimeString();
  $("agent").className = "down";
}
function agentUp() {
  if (!agentDownSince) { $("agent").textContent = "agent: connected"; $("agent").className = ""; return; }
  agentDownSince = null;
  $("agent").textContent = "agent: connected";
  $("agent").className = "";
  startPreviews();
  refreshQueue();
  if (!events || events.readyState === EventSource.CLOSED) listen();
}
async function heartbeat() {
  const r = await api("GET", "/v1/status", undefined, 2000);
  if (r.status === 200) showStatus(r.data);
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

// Each preview has a watchdog: a stream that errors, or whose picture has not changed for 2 s,
// gets an overlay "camera reconnecting…" and is opened again, waiting 1, 2, 4 then 8 s between
// tries, until frames move again (a capture service that restarted, a camera replugged).
const previews = {};
function startPreviews() {
  for (const role of ["document", "face"]) {
    const p = previews[role] || (previews[role] = watch(role));
    p.open();
  }
}
function watch(role) {
  const img = $("preview-" + role), overlay = $("overlay-" + role);
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 12;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const p = { last: null, still: 0, backoff: 1000, retryAt: 0 };
  p.open = () => { img.src = "/v1/cameras/" + role + "/preview.mjpg?t=" + Date.now(); p.still = 0; p.last = null; };
  const lost = () => {
    overlay.hidden = false;
    if (Date.now() < p.retryAt) return;
    p.retryAt = Date.now() + p.backoff;
    p.backoff = Math.min(p.backoff * 2, 8000);
    p.open();
  };
  img.addEventListener("error", lost);
  setInterval(() => {
    if (agentDownSince || $("login").classList.contains("open")) return;
    let sum = null;
    try {
      if (img.naturalWidth > 0) {
        ctx.drawImage(img, 0, 0, 16, 12);
        sum = ctx.getImageData(0, 0, 16, 12).data.join(",");
      }
    } catch (e) { sum = null; }
    if (sum !== null && sum !== p.last) {
      p.last = sum; p.still = 0; p.backoff = 1000; overlay.hidden = true;
    } else if (++p.still >= 2) {
      lost();
    }
  }, 1000);
  return p;
}

async function refreshStatus() {
  const r = await api("GET", "/v1/status");
  if (r.status === 200) showStatus(r.data);
}

function showStatus(s) {
  $("banner").classList.toggle("offline", !s.online);
  $("link").textContent = s.online ? "online" : "OFFLINE — evidence is kept and sent later";
  $("pending").textContent = "pending: " + s.pending;
  $("oldest").textContent = "oldest: " + (s.oldest_pending_secs == null ? "–" : s.oldest_pending_secs + " s");
}

// One line per enrollment: where it is in words, a bar that is full once delivered and empty
// when it failed (the figure written beside it, with bytes and time left while a video goes
// out), what to do about a failure, and Retry.
function renderRow(e) {
  let row = document.querySelector('#queue tr[data-id="' + e.id + '"]');
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = e.id;
    row.innerHTML = "<td></td><td class='state'></td><td><progress max='" + (STEPS.length - 1) + "'></progress><span class='progress-text'></span></td><td class='attempts'></td><td class='error'></td><td></td>";
    row.cells[0].textContent = e.id.slice(0, 8);
    $("queue").prepend(row);
  }
  row.dataset.state = e.state;
  row.classList.toggle("failed", e.state === "failed");
  row.querySelector(".state").textContent = IN_WORDS[e.state] || e.state;
  const bar = row.querySelector("progress"), text = row.querySelector(".progress-text");
  const step = STEPS.indexOf(e.state);
  bar.max = STEPS.length - 1;
  bar.value = DONE.includes(e.state) ? STEPS.length - 1 : Math.max(step, 0);
  text.textContent = DONE.includes(e.state) ? "100 %" : step >= 0 ? Math.round(100 * step / (STEPS.length - 1)) + " %" : "";
  delete row.dataset.upload;
  row.querySelector(".attempts").textContent = e.attempts;
  row.querySelector(".error").textContent = e.state === "failed"
    ? (e.last_error || "failed") + " — check the network and the server, then press Retry; if the evidence is damaged, enroll the customer again."
    : e.last_error ? "retrying by itself: " + e.last_error : "";
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
  events = new EventSource("/v1/events");
  events.onerror = () => { if (events.readyState === EventSource.CLOSED) agentDown(); };
  events.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.type === "enrollment") { renderRow(e); refreshStatus(); }
    if (e.type === "link") refreshStatus();
    if (e.type === "upload") showUpload(e);
  };
}

// A video on its way: bytes sent of the whole, and the time left at the rate seen so far.
function showUpload(e) {
  const row = document.querySelector('#queue tr[data-id="' + e.id + '"]');
  if (!row || !e.total_bytes) return;
  const bar = row.querySelector("progress"), text = row.querySelector(".progress-text");
  const now = Date.now();
  const first = row.dataset.upload ? JSON.parse(row.dataset.upload) : { at: now, sent: e.sent_bytes };
  row.dataset.upload = JSON.stringify(first);
  bar.max = e.total_bytes; bar.value = e.sent_bytes;
  const mb = (n) => (n / 1e6).toFixed(1);
  const rate = (e.sent_bytes - first.sent) / Math.max(1, now - first.at);
  const left = rate > 0 ? Math.ceil((e.total_bytes - e.sent_bytes) / rate / 1000) : null;
  text.textContent = "video: " + mb(e.sent_bytes) + " of " + mb(e.total_bytes) + " MB" + (left === null ? "" : ", about " + left + " s left");
}

// What the server needs before an enrollment can be submitted, in the operator's words; Submit
// stays disabled until nothing is missing.
function missing() {
  const out = [];
  if (!captures.document_front) out.push("Document front (a still that passes)");
  if (!captures.document_photo) out.push("Document photo (cut from a front that passes)");
  if (!captures.document_owner) out.push("Selfie (a still that passes)");
  if (!recordingId) out.push("Video (record, then stop)");
  const fields = [["phone", "Mobile phone"], ["email", "Email"], ["given_name", "Given name"],
    ["surname_1", "First surname"], ["serial_number", "Document number"], ["similarity", "Similarity level"]];
  for (const [id, label] of fields) if (!$(id).value.trim() || !$(id).checkValidity()) out.push(label);
  for (const name of CHECKS) if (radio(name) === null) out.push("Answer: " + $(name + "-label").textContent);
  if (!$("accept").checked) out.push("The customer's acceptance of the terms");
  return out;
}
function updateReadiness() {
  const list = missing();
  $("missing").replaceChildren(...list.map((m) => { const li = document.createElement("li"); li.textContent = m; return li; }));
  $("missing-title").textContent = list.length ? "Still needed before submitting:" : "Everything the server needs is here.";
  $("readiness").classList.toggle("ready", list.length === 0);
  $("submit").disabled = list.length > 0;
}
$("customer").addEventListener("input", updateReadiness);
$("customer").addEventListener("change", updateReadiness);

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
  updateReadiness();
}

for (const shot of document.querySelectorAll(".shot:not(.cut)")) {
  const button = shot.querySelector("button");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const verdict = shot.querySelector(".verdict");
    verdict.textContent = "capturing…";
    verdict.className = "verdict";
    const r = await api("POST", "/v1/captures/still", { role: shot.dataset.role, kind: shot.dataset.slot }, 30000);
    button.disabled = false;
    if (r.status !== 200) { verdict.textContent = (r.data && r.data.message) || "The capture failed; try again."; verdict.className = "verdict retake"; return; }
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
    updateReadiness();
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
    updateReadiness();
  } else {
    $("video-result").textContent = "Record again: " + ((r.data && r.data.message) || "no frames");
  }
}
$("stop").addEventListener("click", stopRecording);

// Claims about the customer come from their source: the operator answers each check (nothing
// is preset), or the kiosk's verification software's JSON, pasted, fills and locks them. The
// source of each goes with the enrollment (`claims_source`) into its signed capture manifest
// and the audit trail.
const OCR_FIELDS = { given_name: "given_name", surname_1: "surname_1", surname_2: "surname_2",
  serial_number: "serial_number", id_document_type: "doc_type", id_document_country: "doc_country" };
const CHECKS = ["liveliness", "documents_match"];
let pasted = { ocr: {}, checksBy: null };

function radio(name) {
  const chosen = document.querySelector('input[name="' + name + '"]:checked');
  return chosen ? chosen.value === "true" : null;
}

// What a pasted JSON filled goes back to what it was when the JSON changes or is cleared.
function unlockAll() {
  for (const el of document.querySelectorAll("#customer .locked")) {
    el.value = el.dataset.before || "";
    el.readOnly = false; el.disabled = false; el.classList.remove("locked");
  }
  for (const el of document.querySelectorAll('#claims input[type="radio"]:disabled')) { el.checked = false; el.disabled = false; }
  $("claims-source").textContent = "Stated by: the operator";
}

function lock(el, value) {
  if (!el.classList.contains("locked")) el.dataset.before = el.value;
  el.value = String(value); el.classList.add("locked");
  if (el.tagName === "SELECT") el.disabled = true; else el.readOnly = true;
}

function readPasted() {
  const text = $("ocr_json").value.trim();
  unlockAll();
  pasted = { ocr: {}, checksBy: null };
  if (!text) { $("ocr-note").textContent = ""; return true; }
  let json;
  try { json = JSON.parse(text); } catch (e) { $("ocr-note").textContent = "Not valid JSON yet: nothing was filled."; return false; }
  if (!json || typeof json !== "object" || Array.isArray(json)) { $("ocr-note").textContent = "The JSON must be an object."; return false; }
  const ocr = json.ocr_data && typeof json.ocr_data === "object" ? json.ocr_data : json;
  const filled = [];
  for (const [key, value] of Object.entries(ocr)) {
    if (["security_checks", "similarity_level", "software", "ocr_data"].includes(key)) continue;
    pasted.ocr[key] = value;
    const el = OCR_FIELDS[key] && $(OCR_FIELDS[key]);
    if (el && (typeof value === "string" || typeof value === "number")) { lock(el, value); filled.push(key); }
  }
  const checks = json.security_checks && typeof json.security_checks === "object" ? json.security_checks : null;
  if (checks || json.similarity_level !== undefined) {
    pasted.checksBy = "software:" + (typeof json.software === "string" && json.software.trim() ? json.software.trim() : "kiosk verification");
    for (const name of CHECKS) {
      if (typeof (checks || {})[name] !== "boolean") continue;
      for (const el of document.querySelectorAll('input[name="' + name + '"]')) { el.checked = el.value === String(checks[name]); el.disabled = true; }
      filled.push(name);
    }
    if (Number.isInteger(json.similarity_level)) { lock($("similarity"), json.similarity_level); filled.push("similarity_level"); }
    $("claims-source").textContent = "Stated by: " + pasted.checksBy;
  }
  $("ocr-note").textContent = filled.length ? "Filled and locked from the JSON: " + filled.join(", ") + "." : "The JSON names no field of this form.";
  updateReadiness();
  return true;
}
$("ocr_json").addEventListener("input", readPasted);

// A claim's source: the software for what its JSON gave, the operator for the rest.
function sourceOf(name) {
  const locked = name === "similarity_level" ? $("similarity").classList.contains("locked")
    : [...document.querySelectorAll('input[name="' + name + '"]')].some((el) => el.disabled);
  return locked && pasted.checksBy ? pasted.checksBy : "operator";
}

function manifest() {
  let ocr = {
    given_name: $("given_name").value, surname_1: $("surname_1").value,
    serial_number: $("serial_number").value, id_document_type: $("doc_type").value,
    id_document_country: $("doc_country").value.toUpperCase(),
  };
  if ($("surname_2").value) ocr.surname_2 = $("surname_2").value;
  ocr = Object.assign(ocr, pasted.ocr);
  const images = {};
  for (const [slot, id] of Object.entries(captures)) images[slot] = { capture: id };
  const security_checks = {}, claims_source = { similarity_level: sourceOf("similarity_level") };
  for (const name of CHECKS) { security_checks[name] = radio(name); claims_source[name] = sourceOf(name); }
  return {
    customer: { mobile_phone_number: $("phone").value.trim(), email: $("email").value.trim() },
    acceptance: { description: "The customer accepts the terms and the privacy policy", date: Date.now(), "user-agent": "kiosk-agent operator page" },
    ocr_data: ocr,
    security_checks,
    similarity_level: Number($("similarity").value),
    claims_source,
    images,
    video: recordingId ? { recording: recordingId } : undefined,
  };
}

$("customer").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!readPasted()) { $("message").textContent = "The OCR JSON is not valid JSON: correct it or clear it."; return; }
  if (CHECKS.some((name) => radio(name) === null)) { $("message").textContent = "Answer each check: nothing is assumed about the customer."; return; }
  const body = manifest();
  $("submit").disabled = true;
  $("message").textContent = "Submitting…";
  const r = await api("POST", "/v1/enrollments", body, 120000);
  updateReadiness();
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
  unlockAll();
  pasted = { ocr: {}, checksBy: null };
  $("ocr-note").textContent = "";
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
  updateReadiness();
}

let started = false;
updateReadiness();
async function start() {
  const r = await api("GET", "/v1/status");
  if (r.status === 401) return;
  if (r.status === 200) showStatus(r.data);
  startPreviews();
  refreshQueue();
  listen();
  if (!started) { started = true; setInterval(heartbeat, 2000); }
}
start();
