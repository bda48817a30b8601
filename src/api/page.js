"use strict";
// Nothing personal is kept in the browser: the form and the captures are cleared after each
// submission, and nothing is written to local storage. The session is an HttpOnly cookie.
const $ = (id) => document.getElementById(id);

// Every text of the page is in this one table, keyed by its English; the Spanish is beside it.
// The daemon sets the document's language (`api.language`, or the browser's Accept-Language).
const LANG = document.documentElement.lang === "es" ? "es" : "en";
const ES = {
  "kiosk-agent — enrollment": "kiosk-agent — alta",
  "kiosk-agent enrollment": "Alta con kiosk-agent",
  "agent: connecting…": "agente: conectando…",
  "agent: connected": "agente: conectado",
  "agent not responding since {0}": "el agente no responde desde las {0}",
  "online": "en línea",
  "OFFLINE — evidence is kept and sent later": "SIN CONEXIÓN — las evidencias se guardan y se envían después",
  "pending: {0}": "pendientes: {0}",
  "oldest: {0}": "la más antigua: {0}",
  "pending: –": "pendientes: –",
  "oldest: –": "la más antigua: –",
  "Log out": "Cerrar sesión",
  "Operator token": "Token del operador",
  "Token": "Token",
  "Open session": "Abrir sesión",
  "Wrong token.": "Token incorrecto.",
  "Too many wrong tokens; wait and try again.": "Demasiados tokens incorrectos; espere e inténtelo de nuevo.",
  "The agent did not answer. Check that kiosk-agent is running; this page reconnects by itself.":
    "El agente no responde. Compruebe que kiosk-agent está en marcha; esta página se reconecta sola.",
  "Enrollment steps": "Pasos del alta",
  "Camera": "Cámara",
  "Document camera": "Cámara de documentos",
  "Face camera": "Cámara de rostro",
  "Document rear": "Reverso del documento",
  "Review": "Revisión",
  "Next": "Siguiente",
  "Back": "Atrás",
  "Step 1 of 6: the document's front": "Paso 1 de 6: el anverso del documento",
  "Lay the card flat under the document camera with its whole front in the frame and follow the hints under the picture: it is taken by itself once the card is still (or press Capture). The document photo is cut from it.":
    "Coloque la tarjeta plana bajo la cámara de documentos, con todo el anverso en el encuadre, y siga las indicaciones bajo la imagen: se toma sola cuando la tarjeta está quieta (o pulse Capturar). La foto del documento se recorta de ella.",
  "Capture the front": "Capturar el anverso",
  "Step 2 of 6: the document's rear": "Paso 2 de 6: el reverso del documento",
  "Turn the card over and capture its rear. A passport has none: skip this step.":
    "Dé la vuelta a la tarjeta y capture el reverso. Un pasaporte no tiene: omita este paso.",
  "Capture the rear": "Capturar el reverso",
  "Skip: no rear (passport)": "Omitir: sin reverso (pasaporte)",
  "Step 3 of 6: the customer's selfie": "Paso 3 de 6: el selfi del cliente",
  "Ask the customer to look at the face camera, alone in the picture: the selfie is taken by itself once the picture is good (or press Capture).":
    "Pida al cliente que mire a la cámara de rostro, solo en la imagen: el selfi se toma solo cuando la imagen es buena (o pulse Capturar).",
  "Capture the selfie": "Capturar el selfi",
  "Step 4 of 6: the video": "Paso 4 de 6: el vídeo",
  "Press Record and ask the customer to look at the face camera until the countdown ends. Watch the clip, then accept it or record again.":
    "Pulse Grabar y pida al cliente que mire a la cámara de rostro hasta que acabe la cuenta atrás. Vea el vídeo y acéptelo o grabe de nuevo.",
  "The recorded clip, to watch before accepting it": "El vídeo grabado, para verlo antes de aceptarlo",
  "Accept the clip": "Aceptar el vídeo",
  "Step 5 of 6: the customer's data and the checks": "Paso 5 de 6: los datos del cliente y las comprobaciones",
  "Step 6 of 6: review, then submit": "Paso 6 de 6: revise y envíe",
  "Check every capture and every field with the customer. Each check says who stated it.":
    "Revise con el cliente cada captura y cada campo. Cada comprobación dice quién la indicó.",
  "none (skipped)": "ninguna (omitida)",
  "missing": "falta",
  "none": "ninguno",
  "The recorded clip": "El vídeo grabado",
  "from the OCR JSON": "del JSON del OCR",
  "typed by the operator": "escrito por el operador",
  "stated by {0}": "indicado por {0}",
  "the operator": "el operador",
  "Live preview of the document camera": "Vista en directo de la cámara de documentos",
  "Live preview of the face camera": "Vista en directo de la cámara de rostro",
  "camera reconnecting…": "reconectando la cámara…",
  "Document front": "Anverso del documento",
  "Document photo": "Foto del documento",
  "Document photo (cut from the front)": "Foto del documento (recortada del anverso)",
  "Selfie": "Selfi",
  "{0}, not taken yet": "{0}, aún sin tomar",
  "Document front, not taken yet": "Anverso del documento, aún sin tomar",
  "Document rear, not taken yet": "Reverso del documento, aún sin tomar",
  "Selfie, not taken yet": "Selfi, aún sin tomar",
  "{0}, taken: {1}": "{0}, tomada: {1}",
  "Document photo, cut from the front": "Foto del documento, recortada del anverso",
  "Document photo, not cut yet": "Foto del documento, aún sin recortar",
  "✓ cut from the front": "✓ recortada del anverso",
  "cut from the front once it passes": "se recorta del anverso cuando este sea válido",
  "capturing…": "capturando…",
  "The capture failed; try again.": "La captura ha fallado; inténtelo de nuevo.",
  "✓ pass": "✓ válida",
  "show the whole card": "muestre la tarjeta entera",
  "move closer": "acérquela",
  "hold the card flat, facing the camera": "ponga la tarjeta plana, de frente a la cámara",
  "too dark": "demasiado oscuro",
  "too bright": "demasiado claro",
  "glare on the card": "reflejos en la tarjeta",
  "hold still": "no se mueva",
  "look at the camera": "mire a la cámara",
  "one face only": "una sola cara",
  "good — hold it there": "bien — manténgalo así",
  "taking the picture…": "tomando la foto…",
  "Capture automatically when the picture is good": "Capturar automáticamente cuando la imagen sea buena",
  "✓ taken automatically": "✓ tomada automáticamente",
  "{0}, the whole camera frame": "{0}, el encuadre completo de la cámara",
  "Retake: {0}": "Repetir: {0}",
  "Video": "Vídeo",
  "Record": "Grabar",
  "Stop": "Detener",
  "recording failed": "la grabación ha fallado",
  "recording… {0} s left": "grabando… quedan {0} s",
  "✓ {0} s recorded ({1} frames)": "✓ {0} s grabados ({1} fotogramas)",
  "Record again: {0}": "Grabe de nuevo: {0}",
  "no frames": "sin fotogramas",
  "Customer": "Cliente",
  "Mobile phone (E.164)": "Teléfono móvil (E.164)",
  "Email": "Correo electrónico",
  "Given name": "Nombre",
  "First surname": "Primer apellido",
  "Second surname": "Segundo apellido",
  "Document number": "Número de documento",
  "Document type": "Tipo de documento",
  "Issuing country (ISO code)": "País emisor (código ISO)",
  "Checks made on the customer: say what was found (nothing is assumed)":
    "Comprobaciones hechas al cliente: indique el resultado (no se presupone nada)",
  "Liveness check": "Prueba de vida",
  "passed": "superada",
  "failed": "fallida",
  "Face matches the document": "El rostro coincide con el documento",
  "yes": "sí",
  "no": "no",
  "Similarity level (0–100)": "Nivel de similitud (0–100)",
  "Similarity level": "Nivel de similitud",
  "Stated by: the operator": "Indicado por: el operador",
  "Stated by: {0}": "Indicado por: {0}",
  "The customer accepts the terms and the privacy policy": "El cliente acepta las condiciones y la política de privacidad",
  "Paste the kiosk's OCR (and verification) JSON: the fields it gives are filled and locked":
    "Pegue el JSON del OCR (y de la verificación) del quiosco: los campos que trae se rellenan y se bloquean",
  "Not valid JSON yet: nothing was filled.": "Todavía no es un JSON válido: no se ha rellenado nada.",
  "The JSON must be an object.": "El JSON debe ser un objeto.",
  '{"given_name": "…", "surname_1": "…", "serial_number": "…"} or {"ocr_data": {…}, "security_checks": {…}, "similarity_level": 91, "software": "…"}':
    '{"given_name": "…", "surname_1": "…", "serial_number": "…"} o {"ocr_data": {…}, "security_checks": {…}, "similarity_level": 91, "software": "…"}',
  "Filled and locked from the JSON: {0}.": "Rellenado y bloqueado desde el JSON: {0}.",
  "The JSON names no field of this form.": "El JSON no contiene ningún campo de este formulario.",
  "Still needed before submitting:": "Falta antes de enviar:",
  "Everything the server needs is here.": "Está todo lo que necesita el servidor.",
  "Document front (a still that passes)": "Anverso del documento (una captura válida)",
  "Document photo (cut from a front that passes)": "Foto del documento (recortada de un anverso válido)",
  "Selfie (a still that passes)": "Selfi (una captura válida)",
  "Video (record, then stop)": "Vídeo (grabe y detenga)",
  "Mobile phone": "Teléfono móvil",
  "Answer: {0}": "Responda: {0}",
  "The customer's acceptance of the terms": "La aceptación de las condiciones por el cliente",
  "Submit enrollment": "Enviar alta",
  "The OCR JSON is not valid JSON: correct it or clear it.": "El JSON del OCR no es válido: corríjalo o bórrelo.",
  "Answer each check: nothing is assumed about the customer.": "Responda a cada comprobación: no se presupone nada del cliente.",
  "Submitting…": "Enviando…",
  "Queued: {0}. The evidence is stored encrypted and sent when online.":
    "En cola: {0}. Las evidencias se guardan cifradas y se envían cuando hay conexión.",
  "Not queued — {0}": "No se ha puesto en cola — {0}",
  "error {0}": "error {0}",
  "Queue": "Cola",
  "Enrollment": "Alta",
  "Where it is": "Dónde está",
  "Progress": "Progreso",
  "Attempts": "Intentos",
  "What to do": "Qué hacer",
  "Action": "Acción",
  "Retry": "Reintentar",
  "Sign with the customer": "Firmar con el cliente",
  "Signed copies": "Copias firmadas",
  "Signing with the customer": "Firma con el cliente",
  "Enrollment {0}": "Alta {0}",
  "Open the service contract": "Abrir el contrato de servicio",
  "(for the customer to read)": "(para que lo lea el cliente)",
  "Documents to sign:": "Documentos para firmar:",
  "Send the code to the customer's phone": "Enviar el código al teléfono del cliente",
  "Code the customer received": "Código que ha recibido el cliente",
  "Sign": "Firmar",
  "Close": "Cerrar",
  "open or print the signed copy": "abrir o imprimir la copia firmada",
  "download it": "descargarla",
  "none: the contract alone": "ninguno: solo el contrato",
  "Sending the code…": "Enviando el código…",
  "The code is on its way to the customer's phone.": "El código va de camino al teléfono del cliente.",
  "The code was not sent: {0}": "No se ha enviado el código: {0}",
  "Enter the code the customer received.": "Escriba el código que ha recibido el cliente.",
  "Signing…": "Firmando…",
  "Signed. The signed copies can be opened, printed or downloaded below.": "Firmado. Las copias firmadas se pueden abrir, imprimir o descargar abajo.",
  "Not signed: {0}": "No se ha firmado: {0}",
  "waiting to be sent": "esperando a enviarse",
  "creating the request": "creando la solicitud",
  "request created; sending the images": "solicitud creada; enviando las imágenes",
  "images sent; sending the video": "imágenes enviadas; enviando el vídeo",
  "video sent; waiting for the server": "vídeo enviado; esperando al servidor",
  "delivered: in review": "entregada: en revisión",
  "approved": "aprobada",
  "signed": "firmada",
  "cancelled": "cancelada",
  "refused by the reviewer": "rechazada por el revisor",
  "{0} — check the network and the server, then press Retry; if the evidence is damaged, enroll the customer again.":
    "{0} — compruebe la red y el servidor y pulse Reintentar; si las evidencias están dañadas, dé de alta al cliente de nuevo.",
  "retrying by itself: {0}": "reintentando por sí solo: {0}",
  "video: {0} of {1} MB": "vídeo: {0} de {1} MB",
  ", about {0} s left": ", quedan unos {0} s",
};
// Texts that had no translation (the browser test asks for none).
const untranslated = new Set();
window.untranslatedTexts = () => [...untranslated];

// A text in the page's language, `{0}`, `{1}` … replaced by `args`.
function t(text, ...args) {
  let out = text;
  if (LANG === "es") {
    if (ES[text] === undefined) untranslated.add(text); else out = ES[text];
  }
  // A function, not a string, as the replacement: a server's words may hold "$&" or "$1".
  args.forEach((a, i) => { out = out.replace("{" + i + "}", () => String(a)); });
  return out;
}

// The served HTML is written in English: its texts, labels, placeholders and alternatives are
// put in the page's language once, at load.
function translatePage() {
  document.title = t(document.title);
  if (LANG === "en") return;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.nodeValue.trim();
    // Document type codes and texts without words (…, –) stay as they are.
    if (!/[a-z]/.test(text) || /^[A-Z]{3}$/.test(text)) continue;
    node.nodeValue = node.nodeValue.replace(text, t(text));
  }
  for (const el of document.querySelectorAll("[alt]")) el.alt = t(el.alt);
  for (const el of document.querySelectorAll("[aria-label]")) el.setAttribute("aria-label", t(el.getAttribute("aria-label")));
  for (const el of document.querySelectorAll("textarea[placeholder]")) el.placeholder = t(el.placeholder);
}
translatePage();
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
async function api(method, path, body, timeoutMs, cancel) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body === undefined ? {} : body); }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs || 15000);
  // A caller that cancels (an auto-capture no longer wanted) is not the agent failing.
  if (cancel) cancel.addEventListener("abort", () => abort.abort());
  init.signal = abort.signal;
  try {
    const r = await fetch(path, init);
    const data = await r.json().catch(() => null);
    agentUp();
    if (r.status === 401) { openLogin(); }
    return { status: r.status, data };
  } catch (err) {
    if (cancel && cancel.aborted) return { status: -1, data: null };
    agentDown();
    return { status: 0, data: { message: t("The agent did not answer. Check that kiosk-agent is running; this page reconnects by itself.") } };
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
  $("agent").textContent = t("agent not responding since {0}", agentDownSince.toLocaleTimeString(LANG));
  $("agent").className = "down";
}
function agentUp() {
  if (!agentDownSince) { $("agent").textContent = t("agent: connected"); $("agent").className = ""; return; }
  agentDownSince = null;
  $("agent").textContent = t("agent: connected");
  $("agent").className = "";
  startPreviews();
  // A stream opened again rereads by itself (listen); with one still open, the page rereads now.
  if (!events || events.readyState === EventSource.CLOSED) listen(); else resync();
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
  else if (r.status === 429) { $("login-error").textContent = (r.data && r.data.message) || t("Too many wrong tokens; wait and try again."); }
  else { $("login-error").textContent = t("Wrong token."); }
});

// Logging out ends the session on the daemon (the cookie alone no longer opens anything).
$("logout").addEventListener("click", async () => {
  await api("DELETE", "/v1/session");
  location.reload();
});

// Only the camera the step uses streams (the document camera for the document's sides, the
// face camera for the selfie and the video, none for the data and the review): the capture
// service encodes no preview nobody sees. That preview has a watchdog: a stream that errors,
// or whose picture has not changed for 2 s, gets an overlay "camera reconnecting…" and is
// opened again, waiting 1, 2, 4 then 8 s between tries, until frames move again (a capture
// service that restarted, a camera replugged).
const previews = {};
const CAMERA_OF = { front: "document", rear: "document", selfie: "face", video: "face" };
function startPreviews() {
  for (const role of ["document", "face"]) {
    const p = previews[role] || (previews[role] = watch(role));
    if (CAMERA_OF[step] === role) p.open(); else p.close();
  }
}
function watch(role) {
  const img = $("preview-" + role), overlay = $("overlay-" + role);
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 12;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const p = { last: null, still: 0, backoff: 1000, retryAt: 0 };
  p.open = () => { img.src = "/v1/cameras/" + role + "/preview.mjpg?t=" + Date.now(); p.still = 0; p.last = null; guidance.open(); };
  p.close = () => { img.removeAttribute("src"); overlay.hidden = true; p.still = 0; p.last = null; p.backoff = 1000; p.retryAt = 0; guidance.close(); };
  const guidance = guide(role);
  const lost = () => {
    overlay.hidden = false;
    if (Date.now() < p.retryAt) return;
    p.retryAt = Date.now() + p.backoff;
    p.backoff = Math.min(p.backoff * 2, 8000);
    p.open();
  };
  img.addEventListener("error", () => { if (img.getAttribute("src")) lost(); });
  setInterval(() => {
    if (agentDownSince || $("login").classList.contains("open") || CAMERA_OF[step] !== role) return;
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

// Live guidance over the preview: the capture service judges the picture five times a second;
// the page draws where the card is (or a frame to put it in) or the face (or an oval to look
// into), green once nothing needs changing, and says in words what to change.
const HINT_WORDS = {
  show_whole_card: "show the whole card", move_closer: "move closer",
  hold_flat: "hold the card flat, facing the camera", too_dark: "too dark", too_bright: "too bright",
  glare: "glare on the card", hold_still: "hold still", no_face: "look at the camera", one_face_only: "one face only",
};
const SVG = "http://www.w3.org/2000/svg";
function guide(role) {
  const svg = $("guide-" + role), hints = $("hints-" + role), img = $("preview-" + role);
  let source = null, said = null;
  const shape = (name, attrs) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  const show = (g) => {
    svg.setAttribute("viewBox", "0 0 " + g.frame_width + " " + g.frame_height);
    svg.style.width = img.clientWidth + "px";
    svg.style.height = img.clientHeight + "px";
    const colour = g.ready ? "ok" : "fix";
    const [w, h] = [g.frame_width, g.frame_height];
    let drawn;
    if (role === "document" && g.card) {
      drawn = shape("polygon", { points: g.card.map((p) => p.join(",")).join(" "), class: colour });
    } else if (role === "document") {
      // Where to put the card: an ID-1 frame, 60 % of the picture wide.
      const cw = w * 0.6, ch = cw / 1.586;
      drawn = shape("rect", { x: (w - cw) / 2, y: (h - ch) / 2, width: cw, height: ch, rx: cw * 0.05, class: "template" });
    } else if (g.face) {
      const [x, y, fw, fh] = g.face;
      drawn = shape("ellipse", { cx: x + fw / 2, cy: y + fh / 2, rx: fw * 0.6, ry: fh * 0.75, class: colour });
    } else {
      drawn = shape("ellipse", { cx: w / 2, cy: h / 2, rx: h * 0.22, ry: h * 0.3, class: "template" });
    }
    svg.replaceChildren(drawn);
    let words = g.hints.map((hint) => t(HINT_WORDS[hint.code] || hint.words)).join(" · ");
    if (g.ready) words = autoWait && autoWait.role === role && g.ready_ms >= g.steady_ms ? t("taking the picture…") : t("good — hold it there");
    if (words !== said) { hints.textContent = words; said = words; }
    hints.className = "hints " + colour;
  };
  return {
    open() {
      if (source) source.close();
      source = new EventSource("/v1/cameras/" + role + "/guidance");
      source.addEventListener("guidance", (e) => { try { show(JSON.parse(e.data)); } catch (err) { /* a torn event: the next one comes */ } });
    },
    close() {
      if (source) { source.close(); source = null; }
      svg.replaceChildren(); hints.textContent = ""; said = null;
    },
  };
}

// Auto-capture: on a capture step whose still is not taken yet, the capture service is asked to
// take it by itself once the guidance has been good for a moment. The button still captures at
// once; leaving the step, or a capture by hand, ends the wait.
let autoWait = null;
function stopAuto() {
  if (autoWait) { autoWait.abort.abort(); autoWait = null; }
}
function startAuto() {
  stopAuto();
  if (!started || !$("auto-capture").checked) return;
  const shot = document.querySelector('.step[data-step="' + step + '"] .shot:not(.cut)');
  if (!shot || shot.dataset.taken === "pass") return;
  const wait = { role: shot.dataset.role, abort: new AbortController() };
  autoWait = wait;
  (async () => {
    const body = { role: shot.dataset.role, kind: shot.dataset.slot, auto: true, timeout_secs: 60 };
    const r = await api("POST", "/v1/captures/still", body, 70000, wait.abort.signal);
    if (autoWait !== wait) return; // ended meanwhile
    autoWait = null;
    if (r.status === 200 && r.data.verdict === "pass") { showTaken(shot, r, true); return; }
    // Timed out with nothing good: wait again (the hints say what is wrong); an error waits
    // for the agent to come back.
    if (r.status === 200) startAuto(); else setTimeout(() => { if (!autoWait) startAuto(); }, 3000);
  })();
}

async function refreshStatus() {
  const r = await api("GET", "/v1/status");
  if (r.status === 200) showStatus(r.data);
}

function showStatus(s) {
  if (s.video_max_seconds) videoSeconds = s.video_max_seconds;
  $("banner").classList.toggle("offline", !s.online);
  $("link").textContent = s.online ? t("online") : t("OFFLINE — evidence is kept and sent later");
  $("pending").textContent = t("pending: {0}", s.pending);
  $("oldest").textContent = t("oldest: {0}", s.oldest_pending_secs == null ? "–" : s.oldest_pending_secs + " s");
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
  row.querySelector(".state").textContent = IN_WORDS[e.state] ? t(IN_WORDS[e.state]) : e.state;
  const bar = row.querySelector("progress"), text = row.querySelector(".progress-text");
  const step = STEPS.indexOf(e.state);
  bar.max = STEPS.length - 1;
  bar.value = DONE.includes(e.state) ? STEPS.length - 1 : Math.max(step, 0);
  text.textContent = DONE.includes(e.state) ? "100 %" : step >= 0 ? Math.round(100 * step / (STEPS.length - 1)) + " %" : "";
  delete row.dataset.upload;
  row.querySelector(".attempts").textContent = e.attempts;
  row.querySelector(".error").textContent = e.state === "failed"
    ? t("{0} — check the network and the server, then press Retry; if the evidence is damaged, enroll the customer again.", e.last_error || t("failed"))
    : e.last_error ? t("retrying by itself: {0}", e.last_error) : "";
  // The action follows the state; a row rendered again in the same state keeps its button, so
  // a press at that moment is not lost.
  const action = row.cells[5];
  if (row.dataset.action === e.state) return row;
  row.dataset.action = e.state;
  action.textContent = "";
  if (e.state === "failed") {
    const b = document.createElement("button");
    b.textContent = t("Retry");
    b.addEventListener("click", async () => { await api("POST", "/v1/enrollments/" + e.id + "/retry"); });
    action.append(b);
  }
  if (e.state === "approved" || e.state === "signed") {
    const b = document.createElement("button");
    b.textContent = e.state === "approved" ? t("Sign with the customer") : t("Signed copies");
    b.className = "open-signing";
    b.addEventListener("click", () => openSigning(e));
    action.append(b);
  }
  return row;
}

// The list and the event stream race: a list read just before a change can arrive just after
// that change's event, and would put the row back a step. So a row the stream updated after the
// list was asked for keeps the stream's view: the stream is ordered and brings every later change.
// Whatever the stream may have missed (a reconnect, a subscriber that fell behind) is reread.
let eventCount = 0;
function resync() { refreshQueue(); refreshStatus(); }
async function refreshQueue() {
  const asked = eventCount;
  const r = await api("GET", "/v1/enrollments");
  if (r.status !== 200) return;
  for (const e of r.data) {
    const row = document.querySelector('#queue tr[data-id="' + e.id + '"]');
    if (!row || Number(row.dataset.event || 0) <= asked) renderRow(e);
  }
}

function listen() {
  events = new EventSource("/v1/events");
  // Subscribed once open: the list read now misses nothing the stream will not bring.
  events.onopen = resync;
  events.onerror = () => { if (events.readyState === EventSource.CLOSED) agentDown(); };
  events.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.type === "enrollment") {
      renderRow(e).dataset.event = ++eventCount;
      refreshStatus();
    }
    if (e.type === "resync") resync();
    if (e.type === "link") refreshStatus();
    if (e.type === "upload") showUpload(e);
  };
}

// The customer's part of the signing flow, once the request is approved: the contract to
// read (in the browser's own viewer), the documents, the code sent to their phone, the
// signature, then each signed copy to open, print or download. A refusal is shown as the
// agent words it. The RAO's approval is not on this page.
let signingId = null;
async function openSigning(e) {
  signingId = e.id;
  $("signing").hidden = false;
  $("signing-for").textContent = t("Enrollment {0}", e.id.slice(0, 8));
  $("contract-link").href = "/v1/enrollments/" + e.id + "/contract.pdf";
  $("signing-message").textContent = "";
  $("otp").value = "";
  await showDocuments(e.state === "signed");
  $("signing").scrollIntoView();
}
async function showDocuments(signed) {
  const r = await api("GET", "/v1/enrollments/" + signingId + "/documents");
  const docs = r.status === 200 ? r.data : [];
  $("signing-docs").replaceChildren(...docs.map((d) => {
    const li = document.createElement("li");
    li.textContent = d.file;
    if (signed && d.uid) {
      const url = "/v1/enrollments/" + signingId + "/documents/" + d.uid + "/signed.pdf";
      const open = document.createElement("a");
      open.href = url; open.target = "_blank"; open.rel = "noopener"; open.className = "signed-open";
      open.textContent = t("open or print the signed copy");
      const save = document.createElement("a");
      save.href = url; save.download = "signed-" + d.file; save.className = "signed-download";
      save.textContent = t("download it");
      li.append(open, save);
    }
    return li;
  }));
  if (!docs.length) $("signing-docs").replaceChildren(Object.assign(document.createElement("li"), { textContent: t("none: the contract alone") }));
  $("send-otp").disabled = signed; $("sign").disabled = signed; $("otp").disabled = signed;
}
$("send-otp").addEventListener("click", async () => {
  $("signing-message").textContent = t("Sending the code…");
  const r = await api("POST", "/v1/enrollments/" + signingId + "/otp", {}, 60000);
  $("signing-message").textContent = r.status === 200 ? t("The code is on its way to the customer's phone.")
    : t("The code was not sent: {0}", (r.data && r.data.message) || t("error {0}", r.status));
  if (r.status === 200) $("otp").focus();
});
$("sign").addEventListener("click", async () => {
  const code = $("otp").value.trim();
  if (!code) { $("signing-message").textContent = t("Enter the code the customer received."); return; }
  $("sign").disabled = true;
  $("signing-message").textContent = t("Signing…");
  const r = await api("POST", "/v1/enrollments/" + signingId + "/sign", { otp: code }, 60000);
  $("sign").disabled = false;
  if (r.status === 200) {
    $("signing-message").textContent = t("Signed. The signed copies can be opened, printed or downloaded below.");
    await showDocuments(true);
  } else {
    $("signing-message").textContent = t("Not signed: {0}", (r.data && r.data.message) || t("error {0}", r.status));
  }
});
$("close-signing").addEventListener("click", () => { $("signing").hidden = true; signingId = null; });

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
  text.textContent = t("video: {0} of {1} MB", mb(e.sent_bytes), mb(e.total_bytes)) + (left === null ? "" : t(", about {0} s left", left));
}

// The steps, in the order an operator takes them. Each says what it still needs; its Next is
// enabled once nothing is missing (the rear is optional: a passport has none), the stepper
// marks each step done or not, and Submit, on the review, is enabled only when every step is.
const FLOW = ["front", "rear", "selfie", "video", "customer", "review"];
let step = "front";
function stepMissing(name) {
  const out = [];
  if (name === "front") {
    if (!captures.document_front) out.push(t("Document front (a still that passes)"));
    else if (!captures.document_photo) out.push(t("Document photo (cut from a front that passes)"));
  }
  if (name === "selfie" && !captures.document_owner) out.push(t("Selfie (a still that passes)"));
  if (name === "video" && !recordingId) out.push(t("Video (record, then stop)"));
  if (name === "customer") {
    const fields = [["phone", "Mobile phone"], ["email", "Email"], ["given_name", "Given name"],
      ["surname_1", "First surname"], ["serial_number", "Document number"], ["similarity", "Similarity level"]];
    for (const [id, label] of fields) if (!$(id).value.trim() || !$(id).checkValidity()) out.push(t(label));
    for (const name of CHECKS) if (radio(name) === null) out.push(t("Answer: {0}", $(name + "-label").textContent));
    if (!$("accept").checked) out.push(t("The customer's acceptance of the terms"));
  }
  return out;
}
function missing() { return FLOW.flatMap(stepMissing); }
const stepSection = (name) => document.querySelector('.step[data-step="' + name + '"]');
function updateReadiness() {
  // A still being taken by hand will replace its step's capture: Next and Submit wait for it.
  const busy = document.querySelector(".shot[data-busy]");
  for (const name of FLOW) {
    const list = stepMissing(name), section = stepSection(name);
    const ul = section.querySelector(".step-missing"), next = section.querySelector(".next");
    if (ul) ul.replaceChildren(...list.map((m) => Object.assign(document.createElement("li"), { textContent: m })));
    if (next) next.disabled = (busy !== null && section.contains(busy)) || list.length > 0 || (name === "rear" && !captures.document_rear);
    const mark = document.querySelector('#stepper button[data-goto="' + name + '"]');
    const done = name === "review" ? false : name === "rear" ? !!captures.document_rear || rearSkipped : list.length === 0;
    mark.classList.toggle("done", done);
    mark.classList.toggle("todo", list.length > 0);
  }
  const list = missing();
  $("missing").replaceChildren(...list.map((m) => Object.assign(document.createElement("li"), { textContent: m })));
  $("missing-title").textContent = list.length ? t("Still needed before submitting:") : t("Everything the server needs is here.");
  $("readiness").classList.toggle("ready", list.length === 0);
  $("submit").disabled = list.length > 0 || busy !== null;
  if (step === "review") renderReview();
}
$("customer").addEventListener("input", updateReadiness);
$("customer").addEventListener("change", updateReadiness);

// Going to a step shows it (and its camera), marks it in the stepper and moves the focus to its
// heading, so a screen reader says where the operator is.
function go(name, focus) {
  const camera = CAMERA_OF[step];
  step = name;
  if (started && CAMERA_OF[name] !== camera) startPreviews();
  document.body.dataset.step = name;
  for (const section of document.querySelectorAll(".step")) section.hidden = section.dataset.step !== name;
  for (const b of document.querySelectorAll("#stepper button")) {
    if (b.dataset.goto === name) b.setAttribute("aria-current", "step"); else b.removeAttribute("aria-current");
  }
  updateReadiness();
  startAuto();
  if (focus !== false) stepSection(name).querySelector("h2").focus();
}
let rearSkipped = false;
for (const b of document.querySelectorAll("#stepper button")) b.addEventListener("click", () => go(b.dataset.goto));
for (const section of document.querySelectorAll(".step")) {
  const at = FLOW.indexOf(section.dataset.step);
  for (const b of section.querySelectorAll(".next")) b.addEventListener("click", () => go(FLOW[at + 1]));
  for (const b of section.querySelectorAll(".back")) b.addEventListener("click", () => go(FLOW[at - 1]));
  // "No rear" is the operator's word on the document: a rear the auto-capture took meanwhile
  // is dropped, so what is submitted is what the operator said.
  for (const b of section.querySelectorAll(".skip")) {
    b.addEventListener("click", () => {
      rearSkipped = true;
      delete captures.document_rear;
      delete fullFrames.document_rear;
      clearShot(section.querySelector(".shot[data-slot=document_rear]"));
      go(FLOW[at + 1]);
    });
  }
}

// The review: every capture, every field and who gave it, every check and who stated it, each
// with a way back to its step.
function renderReview() {
  const figures = [];
  for (const shot of document.querySelectorAll(".shot")) {
    const label = t(shot.dataset.label), src = shot.querySelector("img").getAttribute("src");
    const fig = document.createElement("figure");
    if (src && captures[shot.dataset.slot]) {
      fig.append(Object.assign(document.createElement("img"), { src, alt: label }));
    } else {
      fig.append(Object.assign(document.createElement("p"), { textContent: shot.dataset.slot === "document_rear" ? t("none (skipped)") : t("missing") }));
    }
    fig.append(Object.assign(document.createElement("figcaption"), { textContent: label }));
    figures.push(fig);
    // The whole camera frame the document was cut out of, when the configuration keeps it.
    const full = fullFrames[shot.dataset.slot];
    if (full && captures[shot.dataset.slot]) {
      const whole = document.createElement("figure");
      const text = t("{0}, the whole camera frame", label);
      whole.append(Object.assign(document.createElement("img"), { src: full, alt: text }));
      whole.append(Object.assign(document.createElement("figcaption"), { textContent: text }));
      figures.push(whole);
    }
  }
  const clip = document.createElement("figure");
  if (recordingId) {
    clip.append(Object.assign(document.createElement("video"), { src: $("playback").getAttribute("src"), controls: true, preload: "metadata" }));
    clip.querySelector("video").setAttribute("aria-label", t("The recorded clip"));
  } else {
    clip.append(Object.assign(document.createElement("p"), { textContent: t("missing") }));
  }
  clip.append(Object.assign(document.createElement("figcaption"), { textContent: t("Video") + " " + $("video-result").textContent }));
  figures.push(clip);
  $("review-shots").replaceChildren(...figures);

  const rows = [];
  const row = (label, value, by, optional) => {
    const dd = document.createElement("dd");
    dd.append(document.createTextNode(value === "" || value === null ? (optional ? t("none") : t("missing")) : String(value)));
    if (by) dd.append(" ", Object.assign(document.createElement("span"), { className: "by", textContent: "(" + by + ")" }));
    rows.push(Object.assign(document.createElement("dt"), { textContent: label }), dd);
  };
  const byField = (el) => el.classList.contains("locked") ? t("from the OCR JSON") : t("typed by the operator");
  for (const [id, label] of [["phone", "Mobile phone"], ["email", "Email"], ["given_name", "Given name"],
    ["surname_1", "First surname"], ["surname_2", "Second surname"], ["serial_number", "Document number"],
    ["doc_type", "Document type"], ["doc_country", "Issuing country (ISO code)"]]) {
    row(t(label), $(id).value.trim(), $(id).value.trim() ? byField($(id)) : null, id === "surname_2");
  }
  const answer = (name, yes, no) => radio(name) === null ? "" : radio(name) ? t(yes) : t(no);
  const stated = (name) => t("stated by {0}", sourceOf(name) === "operator" ? t("the operator") : sourceOf(name));
  row(t("Liveness check"), answer("liveliness", "passed", "failed"), radio("liveliness") === null ? null : stated("liveliness"));
  row(t("Face matches the document"), answer("documents_match", "yes", "no"), radio("documents_match") === null ? null : stated("documents_match"));
  row(t("Similarity level"), $("similarity").value, $("similarity").value ? stated("similarity_level") : null);
  row(t("The customer accepts the terms and the privacy policy"), $("accept").checked ? t("yes") : "");
  $("review-fields").replaceChildren(...rows);
}

// The document photo is cut from the front around the face found there: it follows the front.
function showPhoto(photo, reason) {
  const shot = document.querySelector('.shot[data-slot="document_photo"]');
  const img = shot.querySelector("img"), verdict = shot.querySelector(".verdict");
  if (photo) {
    captures.document_photo = photo.id;
    img.src = photo.thumbnail;
    img.alt = t("Document photo, cut from the front");
    verdict.textContent = t("✓ cut from the front");
    verdict.className = "verdict pass";
    shot.dataset.taken = "pass";
  } else {
    delete captures.document_photo;
    img.removeAttribute("src");
    img.alt = t("Document photo, not cut yet");
    verdict.textContent = reason || "";
    verdict.className = "verdict retake";
    delete shot.dataset.taken;
  }
  updateReadiness();
}

// A still the capture service answered, by hand or by itself: its thumbnail and verdict.
const fullFrames = {};
function showTaken(shot, r, auto) {
  if (r.data.full_frame) fullFrames[shot.dataset.slot] = r.data.full_frame.thumbnail; else delete fullFrames[shot.dataset.slot];
  const verdict = shot.querySelector(".verdict");
  const img = shot.querySelector("img");
  // A retake is not kept by the capture service: only a still that passed has a thumbnail.
  if (r.data.thumbnail) img.src = r.data.thumbnail; else img.removeAttribute("src");
  img.alt = t("{0}, taken: {1}", t(shot.dataset.label), r.data.verdict);
  if (r.data.verdict === "pass") {
    captures[shot.dataset.slot] = r.data.id;
    if (shot.dataset.slot === "document_rear") rearSkipped = false;
    verdict.textContent = auto ? t("✓ taken automatically") : t("✓ pass");
    verdict.className = "verdict pass";
  } else {
    delete captures[shot.dataset.slot];
    verdict.textContent = t("Retake: {0}", r.data.reasons.join("; "));
    verdict.className = "verdict retake";
  }
  shot.dataset.taken = r.data.verdict;
  updateReadiness();
  // A front that passes has a face to cut (one without is a retake, saying so).
  if (shot.dataset.slot === "document_front") {
    showPhoto(r.data.verdict === "pass" ? r.data.photo : null, r.data.verdict === "pass" ? "" : t("cut from the front once it passes"));
  }
}

for (const shot of document.querySelectorAll(".shot:not(.cut)")) {
  const button = shot.querySelector("button");
  button.addEventListener("click", async () => {
    stopAuto();
    button.disabled = true;
    shot.dataset.busy = "";
    updateReadiness();
    const verdict = shot.querySelector(".verdict");
    verdict.textContent = t("capturing…");
    verdict.className = "verdict";
    const r = await api("POST", "/v1/captures/still", { role: shot.dataset.role, kind: shot.dataset.slot }, 30000);
    button.disabled = false;
    delete shot.dataset.busy;
    updateReadiness();
    if (r.status !== 200) { verdict.textContent = (r.data && r.data.message) || t("The capture failed; try again."); verdict.className = "verdict retake"; return; }
    showTaken(shot, r, false);
    if (r.data.verdict !== "pass") startAuto();
  });
}
$("auto-capture").addEventListener("change", startAuto);

// The clip's length is the configuration's (`capture.video.max_seconds`, read from the status).
let videoSeconds = 10;
$("record").addEventListener("click", async () => {
  const seconds = videoSeconds;
  $("playback").hidden = true;
  $("playback").removeAttribute("src");
  const r = await api("POST", "/v1/recordings", { max_seconds: seconds });
  if (r.status !== 201) { $("video-result").textContent = (r.data && r.data.message) || t("recording failed"); return; }
  const ends = Date.now() + seconds * 1000;
  recording = { id: r.data.id, ends, timer: setInterval(() => {
    const left = Math.max(0, Math.ceil((ends - Date.now()) / 1000));
    $("countdown").textContent = t("recording… {0} s left", left);
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
    $("video-result").textContent = t("✓ {0} s recorded ({1} frames)", r.data.duration_secs.toFixed(1), r.data.frames);
    // Played back before it is used: record again to replace it.
    $("playback").src = "/v1/recordings/" + rec.id + "/clip.mp4";
    $("playback").hidden = false;
    updateReadiness();
  } else {
    $("video-result").textContent = t("Record again: {0}", (r.data && r.data.message) || t("no frames"));
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
  $("claims-source").textContent = t("Stated by: the operator");
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
  try { json = JSON.parse(text); } catch (e) { $("ocr-note").textContent = t("Not valid JSON yet: nothing was filled."); return false; }
  if (!json || typeof json !== "object" || Array.isArray(json)) { $("ocr-note").textContent = t("The JSON must be an object."); return false; }
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
    $("claims-source").textContent = t("Stated by: {0}", pasted.checksBy);
  }
  $("ocr-note").textContent = filled.length ? t("Filled and locked from the JSON: {0}.", filled.join(", ")) : t("The JSON names no field of this form.");
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
  if (!readPasted()) { $("message").textContent = t("The OCR JSON is not valid JSON: correct it or clear it."); return; }
  if (CHECKS.some((name) => radio(name) === null)) { $("message").textContent = t("Answer each check: nothing is assumed about the customer."); return; }
  const body = manifest();
  $("submit").disabled = true;
  $("message").textContent = t("Submitting…");
  const r = await api("POST", "/v1/enrollments", body, 120000);
  updateReadiness();
  if (r.status === 202) {
    $("message").textContent = t("Queued: {0}. The evidence is stored encrypted and sent when online.", r.data.id.slice(0, 8));
    clearAll();
    go("front");
    refreshQueue();
  } else {
    const field = r.data && r.data.field ? r.data.field + ": " : "";
    $("message").textContent = t("Not queued — {0}", field + ((r.data && r.data.message) || t("error {0}", r.status)));
  }
});

function clearAll() {
  $("customer").reset();
  unlockAll();
  pasted = { ocr: {}, checksBy: null };
  $("ocr-note").textContent = "";
  for (const k of Object.keys(captures)) delete captures[k];
  for (const k of Object.keys(fullFrames)) delete fullFrames[k];
  recordingId = null;
  rearSkipped = false;
  $("video-result").textContent = "";
  $("playback").hidden = true;
  $("playback").removeAttribute("src");
  for (const shot of document.querySelectorAll(".shot")) clearShot(shot);
  updateReadiness();
}
function clearShot(shot) {
  const img = shot.querySelector("img");
  img.removeAttribute("src");
  img.alt = t("{0}, not taken yet", t(shot.dataset.label));
  shot.querySelector(".verdict").textContent = "";
  delete shot.dataset.taken;
}

let started = false;
go("front", false);
async function start() {
  const r = await api("GET", "/v1/status");
  if (r.status === 401) return;
  if (r.status === 200) showStatus(r.data);
  // The session is open: the focus goes to the step the operator is at.
  stepSection(step).querySelector("h2").focus();
  startPreviews();
  listen(); // and the list, once the stream is open
  if (!started) { started = true; setInterval(heartbeat, 2000); }
  startAuto();
}
start();
