//! The local control API of `kiosk-agent run`, over loopback against the sandbox.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::util::*;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";
/// Synthetic cameras for both roles, and a small clip size so recording is cheap.
const CAMERAS: &str = "[cameras.document]\nsource = \"synthetic:1280x720@30\"\n\
    [cameras.face]\nsource = \"synthetic:640x480@30\"\n[capture.video]\nwidth = 640\nheight = 480\n";

/// A daemon with its API on a known port and a token.
pub(crate) struct Daemon {
    pub(crate) child: Guard,
    pub(crate) base: String,
    pub(crate) env: Env,
}

impl Daemon {
    /// The last `lines` lines of the daemon's log, for a failure message.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.env.dir.path().join("daemon.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(sandbox_port: u16, api_extra: &str) -> Daemon {
    start_with(sandbox_port, api_extra, "", &[])
}

/// [`start`] with more configuration sections and private files (name, content) beside it.
pub(crate) fn start_with(sandbox_port: u16, api_extra: &str, sections: &str, files: &[(&str, &str)]) -> Daemon {
    start_custom(sandbox_port, api_extra, sections, files, |c| c)
}

/// [`start_with`], the configuration text passed through `edit` last.
pub(crate) fn start_custom(
    sandbox_port: u16,
    api_extra: &str,
    sections: &str,
    files: &[(&str, &str)],
    edit: fn(String) -> String,
) -> Daemon {
    start_on(0, sandbox_port, api_extra, sections, files, edit)
}

/// [`start_custom`] with the API on `port`; 0: a port the kernel picks as the daemon binds it
/// (a port found free first and bound later can be taken in between by another test's server
/// or connection, and the test then talks to someone else: a 404 for `/v1/cameras`).
pub(crate) fn start_on(
    port: u16,
    sandbox_port: u16,
    api_extra: &str,
    sections: &str,
    files: &[(&str, &str)],
    edit: fn(String) -> String,
) -> Daemon {
    let env = Env::new(sandbox_port);
    for (name, content) in files {
        let path = env.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let token_file = env.dir.path().join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[api]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"api.token\"\n{api_extra}"),
    ) + CAMERAS
        + sections;
    std::fs::write(&env.config, edit(text)).unwrap();
    let (child, addr) = spawn_daemon(&env);
    assert!(port == 0 || addr.port() == port, "the API listens on {addr}, not on port {port}");
    let base = format!("http://{addr}");
    let d = Daemon { child, base, env };
    // Up once it answers (healthy or not).
    wait_for(Duration::from_secs(20), || {
        let (code, body) = call(&d, "GET", "/healthz", None, None);
        check(format!("HTTP {code} {body}"), code != 0, ())
    });
    d
}

/// One request: status and JSON body (`null` if none). `token` None sends none.
pub(crate) fn call(d: &Daemon, method: &str, path: &str, token: Option<&str>, body: Option<Body>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), format!("{}{path}", d.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Raw(bytes)) => req.header("content-type", "application/json").body(bytes),
            // The page's way: multipart is marked as the page's own (the API refuses a
            // state change that is neither JSON nor marked).
            Some(Body::Multipart(form)) => req.header("x-kiosk-csrf", "1").multipart(form),
            // A state change without a body is still JSON (an empty object).
            None if method != "GET" => req.header("content-type", "application/json"),
            None => req,
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(e) if e.is_connect() => (0, Value::Null),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    })
}

pub(crate) enum Body {
    Json(Value),
    Raw(Vec<u8>),
    Multipart(reqwest::multipart::Form),
}

pub(crate) fn authed(d: &Daemon, method: &str, path: &str, body: Option<Body>) -> (u16, Value) {
    call(d, method, path, Some(TOKEN), body)
}

fn b64(path: &std::path::Path) -> Value {
    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap()) })
}

/// The sample manifest with every file inline as Base64.
pub(crate) fn inline_manifest(dir: &std::path::Path) -> Value {
    let mut m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for (slot, file) in [
        ("document_front", "front.jpg"),
        ("document_rear", "rear.jpg"),
        ("document_photo", "photo.jpg"),
        ("document_owner", "selfie.jpg"),
    ] {
        m["images"][slot] = b64(&dir.join(file));
    }
    m["video"] = b64(&dir.join("video.mp4"));
    m
}

fn intake_is_empty(d: &Daemon) -> bool {
    std::fs::read_dir(d.env.data_dir().join("intake")).map(|r| r.count() == 0).unwrap_or(true)
}

#[test]
fn an_enrollment_submitted_through_the_api_reaches_review() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();

    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(intake_is_empty(&d), "the intake is cleared once the enrollment is queued");
    let shown = wait_for(Duration::from_secs(30), || {
        let (_, e) = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None);
        check(e["state"].to_string(), e["state"] == "in_review", e)
    });
    assert_arrived_once(&sandbox.records(), &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
    assert_eq!(shown["capture_manifest_valid"], true);
    assert!(shown["history"].as_array().unwrap().len() >= 4);

    // Multipart: the manifest without files, one part per file (the way to send a large video).
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("images");
    manifest.as_object_mut().unwrap().remove("video");
    let mut form = reqwest::multipart::Form::new().text("manifest", manifest.to_string());
    for (slot, file) in [
        ("document_front", "front.jpg"),
        ("document_photo", "photo.jpg"),
        ("document_owner", "selfie.jpg"),
        ("video", "video.mp4"),
    ] {
        form = form.part(slot, reqwest::multipart::Part::bytes(std::fs::read(dir.join(file)).unwrap()));
    }
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Multipart(form)));
    assert_eq!(code, 202, "{body}");
    let id2 = body["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(30), || {
        let (_, e) = authed(&d, "GET", &format!("/v1/enrollments/{id2}"), None);
        check(e["state"].to_string(), e["state"] == "in_review", ())
    });

    let (code, list) = authed(&d, "GET", "/v1/enrollments?state=in_review", None);
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (code, status) = authed(&d, "GET", "/v1/status", None);
    assert_eq!(code, 200);
    assert_eq!((status["online"].as_bool(), status["pending"].as_u64()), (Some(true), Some(0)));
    assert!(status["last_contact"].is_string() && status["free_disk_bytes"].as_u64() > Some(0), "{status}");
}

#[test]
fn tokens_are_required_everywhere_but_healthz() {
    let d = start(free_port(), "");
    assert_eq!(call(&d, "GET", "/healthz", None, None).0, 200);
    for (method, path, authed_route, _) in kiosk_agent::api::ROUTES {
        if !authed_route {
            continue;
        }
        let path = path.replace("{id}", "x");
        // No credentials, or a session cookie that no session has: 401, nothing throttled.
        let (code, body) = call(&d, &method.to_uppercase(), &path, None, None);
        assert_eq!(code, 401, "{method} {path} without a token: {body}");
        assert_eq!(body["code"], "unauthorized");
        let (code, body) = with_cookie(&d, &method.to_uppercase(), &path, &format!("kiosk_session={TOKEN}"));
        assert_eq!(
            (code, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{method} {path}: the token is no cookie"
        );
    }
    // A wrong bearer token is 401; a few in a row lock guesses out (429, Retry-After), the
    // right token included, until the wait is over.
    for _ in 0..3 {
        let (code, body) = call(&d, "GET", "/v1/status", Some("wrong-token-0123456789"), None);
        assert_eq!((code, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    }
    let (code, body) = call(&d, "GET", "/v1/status", Some(TOKEN), None);
    assert_eq!((code, body["code"].as_str()), (429, Some("throttled")), "{body}");
    wait_for(Duration::from_secs(10), || {
        let (code, body) = authed(&d, "GET", "/v1/status", None);
        check(format!("HTTP {code} {body}"), code == 200, ())
    });
}

/// One request carrying only `cookie`: status and JSON body.
fn with_cookie(d: &Daemon, method: &str, path: &str, cookie: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", d.base))
            .header("cookie", cookie);
        if method != "GET" {
            req = req.header("content-type", "application/json");
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn every_route_is_served_and_described() {
    let d = start(free_port(), "");
    let (code, doc) = authed(&d, "GET", "/v1/openapi.json", None);
    assert_eq!(code, 200);
    for (method, path, _, _) in kiosk_agent::api::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in openapi.json");
        if path.ends_with("/events") || path.ends_with("preview.mjpg") || path.ends_with("/guidance") {
            continue; // streams: checked in their own tests
        }
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        let body = (*method == "post").then(|| Body::Json(json!({})));
        let (code, answer) = authed(&d, &method.to_uppercase(), &concrete, body);
        // A handler answered: not the router's 405, nor its "no such route" 404 (a handler's 404
        // names the id it did not find).
        assert_ne!(code, 405, "{method} {path}");
        assert!(code != 404 || answer["field"] == "id", "{method} {path}: {code} {answer}");
    }
    // Every path the document lists is one of ROUTES, and nothing else is served.
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        kiosk_agent::api::ROUTES.iter().map(|r| r.1).collect::<std::collections::BTreeSet<_>>().len()
    );
    let (code, body) = authed(&d, "GET", "/v1/nothing-here", None);
    assert_eq!((code, body["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn bad_submissions_are_refused_naming_the_field_and_nothing_is_queued() {
    let d = start(free_port(), "max_body_bytes = 400000\n");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let good = inline_manifest(&dir);
    let edited = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        Body::Json(m)
    };
    let cases: Vec<(&str, Body, u16, &str)> = vec![
        ("malformed JSON", Body::Raw(b"{\"customer\": ".to_vec()), 400, ""),
        ("not an object", Body::Json(json!([1, 2])), 400, "manifest"),
        ("wrong type", edited(&|m| m["similarity_level"] = json!("very")), 400, "similarity_level"),
        ("bad email", edited(&|m| m["customer"]["email"] = json!("nope")), 400, "customer.email"),
        (
            "unknown capture id",
            edited(&|m| m["images"]["document_front"] = json!({"capture": "c-42"})),
            400,
            "images.document_front",
        ),
        (
            "bad Base64",
            edited(&|m| m["images"]["document_front"] = json!({"base64": "***"})),
            400,
            "images.document_front.base64",
        ),
        ("a path instead of a file", edited(&|m| m["video"] = json!("/etc/passwd")), 400, "video"),
        (
            "text as an image",
            edited(&|m| m["images"]["document_owner"] = json!({"base64": "aGVsbG8="})),
            400,
            "images.document_owner",
        ),
        ("oversize body", Body::Raw([b"{\"x\": \"".as_slice(), &vec![b'a'; 500_000], b"\"}"].concat()), 413, ""),
    ];
    for (name, body, want, field) in cases {
        let (code, answer) = authed(&d, "POST", "/v1/enrollments", Some(body));
        assert_eq!(code, want, "{name}: {answer}");
        assert!(answer["code"].is_string() && answer["message"].is_string(), "{name}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{name}: {answer}");
        }
    }
    let (_, list) = authed(&d, "GET", "/v1/enrollments", None);
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing was queued");
    assert!(intake_is_empty(&d), "no submitted file is left behind");
    let (code, body) = authed(&d, "GET", "/v1/enrollments/no-such-id", None);
    assert_eq!((code, body["code"].as_str()), (404, Some("not_found")));
    let (code, body) = authed(&d, "GET", "/v1/enrollments?state=flying", None);
    assert_eq!((code, body["field"].as_str()), (400, Some("state")));
    // Camera routes check their bodies too.
    let (code, body) = authed(&d, "POST", "/v1/captures/still", Some(Body::Raw(b"{nope".to_vec())));
    assert_eq!((code, body["field"].as_str()), (400, Some("body")), "{body}");
    let (code, body) = authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": "ceiling"}))));
    assert_eq!((code, body["field"].as_str()), (400, Some("role")), "{body}");
    let (code, body) = authed(&d, "POST", "/v1/recordings", Some(Body::Json(json!({"max_seconds": 0}))));
    assert_eq!((code, body["field"].as_str()), (400, Some("max_seconds")), "{body}");
    let (code, body) = authed(&d, "POST", "/v1/recordings/not-an-id/stop", None);
    assert_eq!((code, body["field"].as_str()), (404, Some("id")), "{body}");
}

#[test]
fn events_stream_state_changes_and_retry_works() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    // Read the event stream with a plain socket, line by line.
    let addr = d.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
    )
    .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("200"), "{first}");
    // The daemon's watcher took its first look when it started, before the API answered: every
    // change of the enrollment made from here on is an event.
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut states = Vec::new();
    while Instant::now() < deadline && states.last().map(String::as_str) != Some("in_review") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(data) = line.trim().strip_prefix("data:") {
            let event: Value = serde_json::from_str(data.trim()).unwrap();
            if event["type"] == "enrollment" && event["id"] == id.as_str() {
                states.push(event["state"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(states.last().map(String::as_str), Some("in_review"), "events seen: {states:?}");
    let _ = reader.get_mut().read(&mut [0u8; 1]);

    // Retry: only a failed enrollment; this one is in review.
    let (code, body) = authed(&d, "POST", &format!("/v1/enrollments/{id}/retry"), None);
    assert_eq!((code, body["code"].as_str()), (409, Some("wrong_state")), "{body}");
}

/// The stream is fed by events, not by polling the queue: a change another process makes (an
/// `enroll` on the command line) reaches it through the worker's wake socket, and the daemon's
/// own changes through the queue's commit hook.
#[test]
fn a_change_made_by_another_process_reaches_the_event_stream() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let manifest = d.env.manifest("m", "", |_| {});
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut resp = rt.block_on(async {
        reqwest::Client::new().get(format!("{}/v1/events", d.base)).bearer_auth(TOKEN).send().await.unwrap()
    });
    let ran = d.env.run(&["enroll", manifest.to_str().unwrap()]);
    assert_exit(&ran, 0, "enroll beside the daemon");
    let id = String::from_utf8_lossy(&ran.output.stdout).trim().to_owned();
    assert!(!id.is_empty(), "enroll prints the id: {ran:?}");
    let states = rt.block_on(async {
        let (mut buf, mut states) = (String::new(), Vec::<String>::new());
        while states.last().map(String::as_str) != Some("in_review") {
            let chunk = match tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                other => panic!("the stream ended or went quiet ({other:?}); states seen: {states:?}"),
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    let e: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if e["type"] == "enrollment" && e["id"] == id.as_str() {
                        states.push(e["state"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        }
        states
    });
    // However fast the worker is, the stream saw the enrollment appear and reach review.
    assert!(states.len() >= 2, "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("in_review"), "{states:?}");
}

#[test]
fn the_api_is_never_served_without_a_token() {
    let env = Env::new(free_port());
    // `key init` (run by Env) created the token, private to this user.
    let token = env.data_dir().join("api.token");
    let meta = std::fs::metadata(&token).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    let text = std::fs::read_to_string(&token).unwrap();
    assert_eq!(text.trim().len(), 64, "32 random bytes in hex");
    // Without it, `run` refuses to start, naming the key and the command that creates it,
    // whatever the address.
    std::fs::remove_file(&token).unwrap();
    for listen in ["127.0.0.1:0", "0.0.0.0:0"] {
        let config = std::fs::read_to_string(&env.config).unwrap();
        let config = config.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{listen}\""));
        std::fs::write(&env.config, &config).unwrap();
        let out = env.run(&["run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 2, &format!("{listen}: {err}"));
        assert!(err.contains("api.token_file") && err.contains("key init"), "{err}");
    }
    // `key init` creates the missing token (the keys it keeps).
    let out = env.run(&["key", "init"]);
    assert_exit(&out, 0, "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("API token created"));
    assert!(std::fs::read_to_string(&token).unwrap().trim() != text.trim(), "a new random token");
}

/// Reads `n` JPEG parts from a preview stream.
fn preview_frames(d: &Daemon, role: &str, n: usize) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(format!("{}/v1/cameras/{role}/preview.mjpg", d.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("multipart/x-mixed-replace"));
        let mut buf: Vec<u8> = Vec::new();
        let mut frames = Vec::new();
        while frames.len() < n {
            let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.unwrap().unwrap()
            else {
                break;
            };
            buf.extend_from_slice(&chunk);
            // Each part: headers with Content-Length, a blank line, then that many bytes.
            while let Some(start) = find(&buf, b"Content-Length: ") {
                let Some(end) = find(&buf[start..], b"\r\n\r\n").map(|e| start + e) else { break };
                let len: usize = std::str::from_utf8(&buf[start + 16..end]).unwrap().trim().parse().unwrap();
                if buf.len() < end + 4 + len {
                    break;
                }
                frames.push(buf[end + 4..end + 4 + len].to_vec());
                buf.drain(..end + 4 + len);
            }
        }
        frames
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn cameras_preview_stills_and_a_recording_become_an_enrollment() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let (code, cams) = authed(&d, "GET", "/v1/cameras", None);
    assert_eq!(code, 200, "{cams}");
    assert_eq!(cams["cameras"].as_array().unwrap().len(), 2);

    // The preview moves: two frames differ.
    let frames = preview_frames(&d, "face", 2);
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.starts_with(&[0xFF, 0xD8])) && frames[0] != frames[1]);

    // A recording runs while stills are taken and another viewer watches.
    let (code, rec) = authed(&d, "POST", "/v1/recordings", Some(Body::Json(json!({"max_seconds": 3}))));
    assert_eq!(code, 201, "{rec}");
    let mut ids = Vec::new();
    let mut photo = None;
    for (role, kind) in [("document", "document_front"), ("document", "document_rear"), ("face", "document_owner")] {
        let (code, still) =
            authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": role, "kind": kind}))));
        assert_eq!(code, 200, "{still}");
        assert_eq!(still["verdict"], "pass", "{still}");
        ids.push(still["id"].as_str().unwrap().to_owned());
        // The front comes with the document photo cut around its face (a portrait); no other.
        assert_eq!(still.get("photo").is_some(), kind == "document_front", "{still}");
        if let Some(p) = still.get("photo") {
            assert!(p["height"].as_u64() > p["width"].as_u64() && p["width"].as_u64() >= Some(150), "{p}");
            photo = Some(p["id"].as_str().unwrap().to_owned());
        }
    }
    let (code, bad) =
        authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": "document", "kind": "passport"}))));
    assert_eq!((code, bad["field"].as_str()), (400, Some("kind")), "{bad}");
    ids.push(photo.expect("the front's photo"));
    assert_eq!(preview_frames(&d, "document", 3).len(), 3, "previews run beside the recording");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let thumb = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/captures/{}/thumbnail.jpg", d.base, ids[0]))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert!(thumb.starts_with(&[0xFF, 0xD8]));
    // The clip's length: time is what is being recorded here, not a synchronisation.
    std::thread::sleep(Duration::from_millis(3200));
    let rec_id = rec["id"].as_str().unwrap();
    let (code, report) = authed(&d, "POST", &format!("/v1/recordings/{rec_id}/stop"), None);
    assert_eq!(code, 200, "{report}");
    // About 3 s at 30 fps taken, kept or (on a busy machine) dropped; the rate is the benchmark's.
    let taken = report["frames"].as_u64().unwrap() + report["dropped"].as_u64().unwrap();
    assert!(taken > 60 && report["frames"].as_u64() > Some(0), "{report}");

    // Ids of the wrong kind or unknown are refused naming the slot.
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let mut m = inline_manifest(&dir);
    m["video"] = json!({"capture": ids[0]});
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(m)));
    assert_eq!((code, body["field"].as_str()), (400, Some("video")), "{body}");
    let mut m = inline_manifest(&dir);
    m["images"]["document_front"] = json!({"capture": "5b1f0a52-9a7e-4c0e-9d53-000000000000"});
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(m)));
    assert_eq!((code, body["field"].as_str()), (400, Some("images.document_front")), "{body}");

    let mut m = inline_manifest(&dir);
    m["images"]["document_front"] = json!({"capture": ids[0]});
    m["images"]["document_rear"] = json!({"capture": ids[1]});
    m["images"]["document_owner"] = json!({"capture": ids[2]});
    m["images"]["document_photo"] = json!({"capture": ids[3]});
    m["video"] = json!({"recording": rec_id});
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(m)));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(30), || {
        let (_, e) = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None);
        check(e["state"].to_string(), e["state"] == "in_review", ())
    });
    // The captures an enrollment took are forgotten by the capture service; none was on disk.
    for taken in &ids {
        let (code, _) = authed(&d, "GET", &format!("/v1/captures/{taken}/thumbnail.jpg"), None);
        assert_eq!(code, 404, "capture {taken} is forgotten");
    }
    assert!(files_under(&d.env.data_dir()).iter().all(|p| !p.starts_with(d.env.data_dir().join("captures"))));
}

#[test]
fn a_dead_capture_service_is_started_again_and_the_api_stays_up() {
    let d = start(free_port(), "");
    assert_eq!(authed(&d, "GET", "/v1/cameras", None).0, 200);
    // Kill the service (a child of the daemon).
    let service = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|p| {
            let status = std::fs::read_to_string(p.path().join("status")).ok()?;
            let ppid: u32 = status.lines().find(|l| l.starts_with("PPid:"))?.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == d.child.id()).then(|| p.file_name().to_string_lossy().parse::<u32>().ok()).flatten()
        })
        .expect("the capture service runs as a child of the daemon");
    std::process::Command::new("kill").args(["-KILL", &service.to_string()]).status().unwrap();
    // Gone (or a zombie the daemon has yet to reap) before the API is asked again.
    wait_for(Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{service}/stat")).unwrap_or_default();
        check(&stat, stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z"), ())
    });
    // The daemon notices and starts it again; the API stayed up throughout.
    wait_for(Duration::from_secs(10), || {
        let (code, body) = authed(&d, "GET", "/v1/cameras", None);
        check(format!("HTTP {code} {body}"), code == 200, ())
    });
    assert_eq!(call(&d, "GET", "/healthz", None, None).0, 200);
}

#[test]
fn the_signing_flow_runs_through_the_api() {
    let sandbox = Sandbox::start_with(0, &["--otp-interval", "0"]);
    let d = start_with(
        sandbox.addr.port(),
        "",
        "[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n",
        &[("rao.token", "f734066d1ce36f9cae4d55be4cdac50e\n")],
    );
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let path = |op: &str| format!("/v1/enrollments/{id}/{op}");
    wait_for(Duration::from_secs(30), || {
        let e = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1;
        check(&e["state"], e["state"] == "in_review", ())
    });

    // A document queued before approval; bad steps refused with the reason.
    let pdf = b"%PDF-1.4\n% contract\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
    let (code, body) = authed(&d, "POST", &(path("documents") + "?name=contract.pdf"), Some(Body::Raw(pdf)));
    assert_eq!(code, 202, "{body}");
    let (code, body) = authed(&d, "POST", &(path("documents") + "?name=x.pdf"), Some(Body::Raw(b"not a pdf".to_vec())));
    assert_eq!((code, body["field"].as_str()), (400, Some("body")), "{body}");
    let (code, body) = authed(&d, "POST", &path("refuse"), Some(Body::Json(json!({}))));
    assert_eq!((code, body["field"].as_str()), (400, Some("reason")), "{body}");
    let (code, body) = authed(&d, "POST", &path("sign"), Some(Body::Json(json!({"otp": "123456"}))));
    assert_eq!(code, 409, "the server refuses signing before approval (412): {body}");
    assert!(body["message"].as_str().unwrap().contains("not ready for this step"), "{body}");

    // Only this kiosk's enrollments, by their id: the request's raw pk is refused.
    let pk = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1["request_pk"].as_u64().unwrap();
    let (code, body) = authed(&d, "POST", &format!("/v1/enrollments/{pk}/approve"), None);
    assert_eq!((code, body["code"].as_str()), (409, Some("refused")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("request pk"), "{body}");
    assert_eq!(authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1["state"], "in_review");

    let (code, body) = authed(&d, "POST", &path("approve"), None);
    assert_eq!((code, body["status"].as_str()), (200, Some("ENROLLREADY")), "{body}");
    wait_for(Duration::from_secs(30), || {
        let (_, e) = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None);
        check(&e["history"], e["history"].as_array().unwrap().iter().any(|h| h["kind"] == "document_uploaded"), ())
    });
    let (code, body) = authed(&d, "POST", &path("otp"), Some(Body::Json(json!({}))));
    assert_eq!(code, 200, "{body}");
    let pk = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1["request_pk"]
        .as_u64()
        .expect("pk is a number")
        .to_string();
    let (_, otp) = http("GET", &sandbox.url(&format!("/_sandbox/requests/{pk}/otp")), None);
    let code_ = otp["otp"].as_str().unwrap().to_owned();
    let wrong = if code_ == "000000" { "111111" } else { "000000" };
    let (code, body) = authed(&d, "POST", &path("sign"), Some(Body::Json(json!({"otp": wrong}))));
    assert_eq!(code, 409, "a wrong OTP is refused: {body}");
    let (code, body) = authed(&d, "POST", &path("sign"), Some(Body::Json(json!({"otp": code_}))));
    assert_eq!(code, 200, "{body}");
    let audit = d.env.run(&["audit", "export"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("approved: request") && audit.contains("signed: request"), "{audit}");
}

#[test]
fn a_camera_that_goes_away_ends_its_stream_cleanly_and_the_api_stays_up() {
    // The face camera is a 2-second clip, replayed in real time: it "disappears" when the
    // clip ends. The capture service reads the configuration when it first starts.
    let clip = samples_dir().join("video.mp4");
    let d = start(free_port(), "");
    let text = std::fs::read_to_string(&d.env.config)
        .unwrap()
        .replace("source = \"synthetic:640x480@30\"", &format!("source = \"file:{}\"", clip.display()));
    std::fs::write(&d.env.config, text).unwrap();
    // The service starts on first use and reads the file then.
    let (code, rec) = authed(&d, "POST", "/v1/recordings", Some(Body::Json(json!({"max_seconds": 10}))));
    assert_eq!(code, 201, "{rec}");
    let frames = preview_frames(&d, "face", 1000);
    assert!(frames.len() < 1000, "the preview ended with the camera after {} frames", frames.len());
    let (code, report) = authed(&d, "POST", &format!("/v1/recordings/{}/stop", rec["id"].as_str().unwrap()), None);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["short"], true, "the recording ended early and says so: {report}");
    assert_eq!(call(&d, "GET", "/healthz", None, None).0, 200);
    assert_eq!(authed(&d, "GET", "/v1/status", None).0, 200);
}

#[test]
fn the_api_also_listens_on_a_private_unix_socket() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let d = start(free_port(), "unix_socket = \"api.sock\"\n");
    let sock = d.env.dir.path().join("api.sock");
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "only the daemon's user reaches it");
    let ask = |auth: &str| {
        let mut stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        std::io::Write::write_all(
            &mut stream,
            format!("GET /v1/status HTTP/1.1\r\nHost: kiosk\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let answer = ask(&format!("Authorization: Bearer {TOKEN}\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"pending\""), "{answer}");
    assert!(ask("").starts_with("HTTP/1.1 401"), "the token is required there too");
}

/// The systemd layout: the capture service is its own unit. Until it runs, camera routes are 503
/// (and the rest of the API works); once it listens, they work.
#[test]
fn an_external_capture_service_is_used_when_it_runs() {
    let d = start(free_port(), "capture_service = \"external\"\n");
    let (code, body) = authed(&d, "GET", "/v1/cameras", None);
    assert_eq!((code, body["code"].as_str()), (503, Some("capture_service_unavailable")), "{body}");
    assert_eq!(authed(&d, "GET", "/v1/status", None).0, 200);
    let helper = std::path::Path::new(BIN).with_file_name("kiosk-agent-capture");
    let data = d.env.data_dir();
    let mut service = std::process::Command::new(helper)
        .arg("--config")
        .arg(&d.env.config)
        .arg("capture-service")
        .arg("--socket")
        .arg(data.join("capture.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_guarded();
    wait_for(Duration::from_secs(10), || {
        let (code, body) = authed(&d, "GET", "/v1/cameras", None);
        check(format!("HTTP {code} {body}"), code == 200, ())
    });
    let (code, still) = authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": "face"}))));
    assert_eq!((code, still["verdict"].as_str()), (200, Some("pass")), "{still}");
    let _ = service.kill();
    let _ = service.wait();
}

#[test]
fn video_upload_progress_is_streamed() {
    // Every video upload stalls: the upload is in progress long enough to be seen.
    let sandbox = Sandbox::start_with(0, &["--faults", "video:stall=1;stall_secs=3"]);
    let d = start(sandbox.addr.port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut resp = rt.block_on(async {
        reqwest::Client::new().get(format!("{}/v1/events", d.base)).bearer_auth(TOKEN).send().await.unwrap()
    });
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let size = std::fs::metadata(dir.join("video.mp4")).unwrap().len();
    let event = rt.block_on(async {
        let mut buf = String::new();
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await.unwrap().unwrap().unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            for line in buf.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let e: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if e["type"] == "upload" && e["id"] == id.as_str() {
                        return e;
                    }
                }
            }
        }
    });
    assert_eq!(event["total_bytes"], size, "{event}");
    assert!(event["sent_bytes"].as_u64().unwrap() <= size);
}

#[test]
fn a_full_spool_is_507_and_nothing_is_queued() {
    let d = start_custom(free_port(), "", "", &[], |c| c.replace("[storage]\n", "[storage]\nmax_spool_bytes = 1000\n"));
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!((code, body["code"].as_str()), (507, Some("spool_full")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("storage.max_spool_bytes"), "{body}");
    assert_eq!(authed(&d, "GET", "/v1/enrollments", None).1.as_array().unwrap().len(), 0);
    assert!(intake_is_empty(&d));
}

#[test]
fn metrics_are_read_from_the_queue_at_scrape_time() {
    let sandbox = Sandbox::start(0);
    // Face stills are too dark for this kiosk's rule: every one is a retake.
    let d = start_with(
        sandbox.addr.port(),
        "",
        "[cameras.face.quality]\nmin_brightness = 254.0\nmax_brightness = 255.0\n",
        &[],
    );
    // A known sequence: one enrollment delivered, one refused for good at its evidences, one
    // whose create the server keeps answering 503, and three stills (two pass, one retake).
    refuse(&sandbox, "evidences", "refused@example.com", 422, "Document type not accepted");
    refuse(&sandbox, "create", "busy@example.com", 503, "try later");
    // Enrolled by another process (the CLI): gauges and counters come from SQLite.
    let manifest = d.env.manifest("m", "", |_| {});
    let id = d.env.enroll(&manifest);
    let bad = d.env.enroll(&d.env.manifest("bad", "b", |m| m["customer"]["email"] = json!("refused@example.com")));
    let busy = d.env.enroll(&d.env.manifest("busy", "c", |m| m["customer"]["email"] = json!("busy@example.com")));
    wait_for(Duration::from_secs(30), || {
        let state = |id: &str| authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1["state"].clone();
        let busy = authed(&d, "GET", &format!("/v1/enrollments/{busy}"), None).1;
        let (good, failed) = (state(&id), state(&bad));
        let seen = format!("{good}, {failed}, busy attempts {}", busy["attempts"]);
        check(seen, good == "in_review" && failed == "failed" && busy["attempts"].as_u64() >= Some(1), ())
    });
    for (role, verdict) in [("document", "pass"), ("document", "pass"), ("face", "retake")] {
        let (code, still) = authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": role}))));
        assert_eq!((code, still["verdict"].as_str()), (200, Some(verdict)), "{still}");
    }
    assert_eq!(call(&d, "GET", "/metrics", None, None).0, 401, "metrics need the token like the API");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/metrics", d.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for line in [
        "kiosk_agent_enrollments{state=\"in_review\"} 1",
        "kiosk_agent_enrollments{state=\"queued\"} 0",
        "kiosk_agent_enrollments{state=\"failed\"} 1",
        "kiosk_agent_online 1",
        "kiosk_agent_uploads_total{kind=\"evidences\"} 1",
        "kiosk_agent_uploads_total{kind=\"video\"} 1",
        "kiosk_agent_failures_total{class=\"rejected\"} 1",
        "kiosk_agent_failures_total{class=\"network\"} 0",
        "kiosk_agent_captures_total{role=\"document\",verdict=\"pass\"} 2",
        "kiosk_agent_captures_total{role=\"face\",verdict=\"pass\"} 0",
        "kiosk_agent_captures_total{role=\"face\",verdict=\"retake\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let value = |prefix: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let video_size = std::fs::metadata(manifest.parent().unwrap().join("video.mp4")).unwrap().len();
    assert_eq!(value("kiosk_agent_upload_bytes_total{kind=\"video\"}"), video_size, "the video's file size");
    assert!(value("kiosk_agent_upload_bytes_total{kind=\"evidences\"}") > 10_000, "three images");
    assert!(value("kiosk_agent_retries_total{class=\"server_error\"}") >= 1, "the 503s are retried");
    let busy_bytes = authed(&d, "GET", &format!("/v1/enrollments/{busy}"), None).1["bytes"].as_u64().unwrap();
    assert_eq!(value("kiosk_agent_pending_bytes "), busy_bytes, "only the one still waiting");
    assert!(
        value("kiosk_agent_enrollments{state=\"queued\"}") + value("kiosk_agent_enrollments{state=\"creating\"}") == 1
    );
    let contact = text.lines().find(|l| l.starts_with("kiosk_agent_seconds_since_server_contact ")).unwrap();
    let secs: i64 = contact.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0..60).contains(&secs), "{contact}");
    assert!(text.contains("kiosk_agent_build_info{version=") && text.trim_end().ends_with("# EOF"), "{text}");
}

#[test]
fn healthz_turns_unhealthy_when_nothing_moves_while_online() {
    // Every create stalls: the server answers probes but the enrollment never moves.
    let sandbox = Sandbox::start_with(0, &["--faults", "create:stall=1;stall_secs=60"]);
    let d = start_custom(sandbox.addr.port(), "", "[health]\nstall_secs = 1\n", &[], |c| c);
    let (code, body) = call(&d, "GET", "/healthz", None, None);
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")), "{body}");
    d.env.enroll(&d.env.manifest("m", "", |_| {}));
    let body = wait_for(Duration::from_secs(20), || {
        let (code, body) = call(&d, "GET", "/healthz", None, None);
        check(format!("HTTP {code} {body}"), code == 503, body.clone())
    });
    assert_eq!(body["status"], "unhealthy");
    assert!(body["reasons"][0].as_str().unwrap().contains("no progress"), "{body}");

    // The disk floor: a minimum no disk has.
    let d = start_custom(free_port(), "", "", &[], |c| {
        c.replace("min_free_bytes = 0", "min_free_bytes = 9223372036854775807")
    });
    let (code, body) = call(&d, "GET", "/healthz", None, None);
    assert_eq!(code, 503, "{body}");
    assert!(body["reasons"][0].as_str().unwrap().contains("min_free_bytes"), "{body}");
}

/// The daemon's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM in /proc/PID/status");
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

/// Sends `total` bytes (a JSON-looking prefix, then filler) as a chunked body, never holding it:
/// the status, or the error when the daemon closed the connection before the end.
fn send_streamed(d: &Daemon, path: &str, token: Option<&str>, total: usize) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        const CHUNK: usize = 1 << 20;
        let chunks = (0..total / CHUNK).map(|i| {
            let mut chunk = vec![b'A'; CHUNK];
            if i == 0 {
                chunk[..28].copy_from_slice(b"{\"customer\": {\"email\": \"AAAA");
            }
            Ok::<_, std::io::Error>(chunk)
        });
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", d.base))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
    })
}

/// Bodies are bounded before they are read: a 300 MB JSON enrollment, a 300 MB document and
/// 300 MB sent without a token are each refused (413, 401) without the daemon holding them;
/// its peak RSS is printed and stays under 256 MB.
#[test]
fn huge_bodies_are_refused_within_bounded_memory() {
    let d = start(free_port(), "");
    const BIG: usize = 300 << 20;
    let id = "00000000-0000-4000-8000-000000000000";
    let document = format!("/v1/enrollments/{id}/documents?name=big.pdf");
    let cases: [(&str, &str, Option<&str>, &[u16]); 4] = [
        ("JSON enrollment", "/v1/enrollments", Some(TOKEN), &[413]),
        ("document", &document, Some(TOKEN), &[413]),
        ("unauthenticated session", "/v1/session", None, &[413]),
        ("unauthenticated enrollment", "/v1/enrollments", None, &[401]),
    ];
    let before = peak_rss(&d);
    for (what, path, token, refused) in cases {
        match send_streamed(&d, path, token, BIG) {
            Ok(code) => assert!(refused.contains(&code), "{what}: {code}"),
            // The daemon answered and closed before the client finished sending.
            Err(e) => println!("{what}: connection closed early ({e})"),
        }
        let peak = peak_rss(&d);
        println!("{what}: daemon peak RSS {} MiB", peak >> 20);
        assert!(peak <= 256 << 20, "{what}: peak RSS {} MiB", peak >> 20);
    }
    println!("peak RSS: {} MiB before, {} MiB after 4 × 300 MB bodies", before >> 20, peak_rss(&d) >> 20);
    // Nothing was queued, and the daemon still answers.
    let (code, list) = authed(&d, "GET", "/v1/enrollments", None);
    assert_eq!((code, list.as_array().map(Vec::len)), (200, Some(0)), "{list}");
}

/// After stills (a retake among them), a recording and a multipart upload cut off midway, a
/// `kill -9` and a restart, no file under the data directory holds a JPEG, an MP4, a PDF or the
/// customer's data in clear, nor did one while the upload hung.
#[test]
fn nothing_personal_is_left_in_clear_after_a_kill_and_restart() {
    use std::io::Write as _;
    let mut d = start(free_port(), "");
    for role in ["document", "face", "face"] {
        let (code, still) = authed(&d, "POST", "/v1/captures/still", Some(Body::Json(json!({"role": role}))));
        assert_eq!(code, 200, "{still}");
    }
    let (code, rec) = authed(&d, "POST", "/v1/recordings", Some(Body::Json(json!({"max_seconds": 1}))));
    assert_eq!(code, 201, "{rec}");
    // Past the clip's 1 s maximum (the subject: it ends by itself), not a synchronisation.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, report) = authed(&d, "POST", &format!("/v1/recordings/{}/stop", rec["id"].as_str().unwrap()), None);
    assert_eq!(code, 200, "{report}");
    // A multipart enrollment whose connection stops halfway through its first image.
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let front = std::fs::read(dir.join("front.jpg")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{}\r\n--b\r\nContent-Disposition: form-data; name=\"document_front\"\r\n\r\n",
        serde_json::to_string(&serde_json::from_str::<Value>(&manifest).map(|mut m| {
            m["images"] = json!({});
            m.as_object_mut().unwrap().remove("video");
            m
        }).unwrap()).unwrap()
    );
    let mut stream = std::net::TcpStream::connect(d.base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /v1/enrollments HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nX-Kiosk-CSRF: 1\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000\r\n\r\n{body}",
        d.base.trim_start_matches("http://")
    )
    .unwrap();
    stream.write_all(&front[..front.len() / 2]).unwrap();
    stream.flush().unwrap();
    let data = d.env.data_dir();
    let holds_jpeg = |p: &std::path::Path| std::fs::read(p).is_ok_and(|b| find(&b, b"\xff\xd8\xff").is_some());
    // Mid-upload, the part that arrived is in a memory file, not on the disk; stills and clips
    // are in the capture service's memory. The daemon holding the part's memory file is the sign
    // that it has the bytes.
    let daemon_fds = format!("/proc/{}/fd", d.child.id());
    wait_for(Duration::from_secs(10), || {
        let links: Vec<String> = std::fs::read_dir(&daemon_fds)
            .map(|dir| {
                dir.flatten()
                    .filter_map(|f| std::fs::read_link(f.path()).ok())
                    .map(|l| l.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        check(format!("{links:?}"), links.iter().any(|l| l.contains("memfd:document_front")), ())
    });
    let in_clear: Vec<_> = files_under(&data).into_iter().filter(|p| holds_jpeg(p)).collect();
    assert!(in_clear.is_empty(), "JPEGs on disk mid-upload: {in_clear:?}");
    assert!(!data.join("captures").exists(), "stills and clips are kept in the capture service's memory");
    // kill -9 while the upload hangs; then the daemon starts again.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    drop(stream);
    // Started again; on port 0, so at an address of its own again.
    let (child, addr) = spawn_daemon(&d.env);
    (d.child, d.base) = (child, format!("http://{addr}"));
    wait_for(Duration::from_secs(20), || {
        let (code, body) = call(&d, "GET", "/healthz", None, None);
        check(format!("HTTP {code} {body}"), code == 200, ())
    });
    let email = "ana.garcia@example.com";
    let left = wait_for(Duration::from_secs(10), || {
        let in_clear: Vec<String> = files_under(&data)
            .into_iter()
            .filter(|p| {
                let bytes = std::fs::read(p).unwrap_or_default();
                [b"\xff\xd8\xff".as_slice(), b"ftypisom", b"ftypmp4", b"%PDF-", email.as_bytes()]
                    .iter()
                    .any(|magic| find(&bytes, magic).is_some())
            })
            .map(|p| p.display().to_string())
            .collect();
        check(format!("{in_clear:?}"), in_clear.is_empty(), in_clear.clone())
    });
    assert!(left.is_empty());
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// A video part too large for memory spills to the disk sealed from its first byte: while it
/// arrives no file under the data directory holds its MP4 header or any of its content, yet it
/// is probed (through the seal), queued and delivered byte for byte, and the spill is erased.
#[test]
fn a_video_too_large_for_memory_is_sealed_on_the_disk_and_still_delivered() {
    use std::io::Write as _;
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    // The sample clip with a 70 MiB `free` box after it (players skip it): a valid MP4 past
    // the 64 MiB kept in memory, its filler a text the scan below can find.
    let marker = b"PLAIN-VIDEO-BYTES";
    let mut video = std::fs::read(dir.join("video.mp4")).unwrap();
    let filler: Vec<u8> = marker.iter().copied().cycle().take(70 << 20).collect();
    video.extend_from_slice(&(filler.len() as u32 + 8).to_be_bytes());
    video.extend_from_slice(b"free");
    video.extend_from_slice(&filler);
    std::fs::write(dir.join("video.mp4"), &video).unwrap();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("images");
    manifest.as_object_mut().unwrap().remove("video");
    let mut body = Vec::new();
    let mut part = |name: &str, bytes: &[u8]| {
        write!(body, "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    part("manifest", manifest.to_string().as_bytes());
    for (slot, file) in
        [("document_front", "front.jpg"), ("document_photo", "photo.jpg"), ("document_owner", "selfie.jpg")]
    {
        part(slot, &std::fs::read(dir.join(file)).unwrap());
    }
    part("video", &video);
    body.extend_from_slice(b"--b--\r\n");
    let host = d.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    write!(
        stream,
        "POST /v1/enrollments HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nX-Kiosk-CSRF: 1\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // All but the last 2 MiB: past the 64 MiB kept in memory, the rest of the part on the disk.
    let held_back = body.len() - (2 << 20);
    stream.write_all(&body[..held_back]).unwrap();
    stream.flush().unwrap();
    let data = d.env.data_dir();
    let spill = wait_for(Duration::from_secs(30), || {
        let spilled: Vec<_> = files_under(&data.join("intake"))
            .into_iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 66 << 20))
            .collect();
        check(format!("{spilled:?}"), !spilled.is_empty(), spilled.clone())
    });
    // The clip's own box headers, size and tag (8 bytes and more): a 4-byte tag alone turns up
    // by chance in 70 MB of ciphertext about once in 20 runs.
    let header = |tag: &[u8]| {
        let at = find(&video, tag).unwrap_or_else(|| panic!("the sample clip has {tag:?}"));
        video[at - 4..at + 8].to_vec()
    };
    let (ftyp, moov, mdat) = (header(b"ftyp"), header(b"moov"), header(b"mdat"));
    for file in files_under(&data) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for magic in [ftyp.as_slice(), &moov, &mdat, marker] {
            assert!(
                find(&bytes, magic).is_none(),
                "{} holds {:?} in clear",
                file.display(),
                String::from_utf8_lossy(magic)
            );
        }
    }
    stream.write_all(&body[held_back..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let id = answer.split("\"id\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    assert!(!spill[0].exists() && intake_is_empty(&d), "the spill is erased once queued");
    let shown = wait_for(Duration::from_secs(60), || {
        let (_, e) = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None);
        check(e["state"].to_string(), e["state"] == "in_review", e)
    });
    let records = sandbox.records();
    let pk = shown["request_pk"].as_u64().unwrap().to_string();
    assert_eq!(
        request(&records, &pk)["video"]["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&video)),
        "the video arrives byte for byte"
    );
}

/// A multipart part too large for memory (a long video) spills to the intake directory and is
/// shredded with the submission, whatever its outcome.
#[test]
fn a_video_too_large_for_memory_spills_to_the_disk_and_is_shredded() {
    let d = start(free_port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["images"] = json!({});
    manifest.as_object_mut().unwrap().remove("video");
    // 70 MB that is no MP4: it spills past 64 MiB, then fails validation.
    let junk = vec![b'k'; 70 << 20];
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .part("document_front", reqwest::multipart::Part::bytes(std::fs::read(dir.join("front.jpg")).unwrap()))
        .part("document_photo", reqwest::multipart::Part::bytes(std::fs::read(dir.join("photo.jpg")).unwrap()))
        .part("document_owner", reqwest::multipart::Part::bytes(std::fs::read(dir.join("selfie.jpg")).unwrap()))
        .part("video", reqwest::multipart::Part::bytes(junk));
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Multipart(form)));
    assert_eq!((code, body["field"].as_str()), (400, Some("video")), "{body}");
    assert!(intake_is_empty(&d), "the spilled part is shredded");
    let (_, list) = authed(&d, "GET", "/v1/enrollments", None);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}

/// Reads `guidance` events from a role's guidance stream until `enough` says so (or 30 s).
fn guidance_events(d: &Daemon, role: &str, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(format!("{}/v1/cameras/{role}/guidance", d.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let (mut buf, mut events) = (String::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !enough(&events) && Instant::now() < deadline {
            let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await else { break };
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                assert!(event.starts_with("event: guidance\ndata: "), "{event}");
                events.push(serde_json::from_str(event.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap());
            }
        }
        events
    })
}

pub(crate) fn sliding_card_document_camera(config: String) -> String {
    config.replace(
        "[cameras.document]\nsource = \"synthetic:1280x720@30\"\n",
        "[cameras.document]\nsource = \"synthetic-card:1280x720@15\"\ncard = \"id1\"\nkeep_full_frame = true\n",
    )
}

#[test]
fn the_guidance_stream_tells_what_to_change_and_auto_capture_takes_the_card_once_it_rests() {
    // The face camera's test pattern holds a face good enough to take within a second on an
    // idle machine: a brightness rule it never meets makes its wait below one with nothing to
    // wait for, whatever the machine's speed.
    let never_bright = "[cameras.face.quality]\nmin_brightness = 254.0\nmax_brightness = 255.0\n";
    let d = start_custom(free_port(), "", never_bright, &[], sliding_card_document_camera);
    // The card slides in: first "show the whole card", then it rests and the preview is good
    // for the steady time, with the card's outline to draw.
    let events = guidance_events(&d, "document", |e| e.last().is_some_and(|g| g["ready_ms"].as_u64() >= Some(700)));
    let codes = |g: &Value| {
        g["hints"].as_array().unwrap().iter().map(|h| h["code"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert!(codes(&events[0]).contains(&"show_whole_card".to_owned()), "{}", events[0]);
    let last = events.last().unwrap();
    assert_eq!((last["ready"].as_bool(), last["steady_ms"].as_u64()), (Some(true), Some(700)), "{last}");
    assert_eq!((last["frame_width"].as_u64(), last["frame_height"].as_u64()), (Some(1280), Some(720)));
    let outline = last["card"].as_array().expect("the card's outline");
    assert_eq!(outline.len(), 4);
    assert!(events.iter().all(|g| g["hints"].as_array().unwrap().iter().all(|h| h["words"].is_string())));
    assert!(events.len() >= 5, "a few a second: {}", events.len());

    // Auto-capture waits for the good moment and answers the cut card.
    let (code, still) = authed(
        &d,
        "POST",
        "/v1/captures/still",
        Some(Body::Json(json!({"role": "document", "kind": "document_front", "auto": true, "timeout_secs": 20}))),
    );
    assert_eq!(code, 200, "{still}");
    assert_eq!(still["verdict"], "pass", "{still}");
    assert!(still["ready_since_ms"].as_u64().unwrap() >= 1500, "never while it moved: {still}");
    assert_eq!(still["card"]["format"], "id1", "{still}");
    assert!(
        still["id"].is_string() && still["photo"]["id"].is_string(),
        "kept, with the photo cut from the card: {still}"
    );

    // A wait with nothing to wait for times out as a retake saying what was wrong; bad waits are refused.
    let (code, face) = authed(
        &d,
        "POST",
        "/v1/captures/still",
        Some(Body::Json(json!({"role": "face", "auto": true, "timeout_secs": 1}))),
    );
    assert_eq!(
        (code, face["verdict"].as_str(), face["auto"].as_str()),
        (200, Some("retake"), Some("timed_out")),
        "{face}"
    );
    let reason = face["reasons"][0].as_str().unwrap();
    assert!(reason.contains("no good moment within") && reason.contains("too dark"), "{face}");
    assert!(face.get("id").is_none(), "nothing kept: {face}");
    for (body, field) in [
        (json!({"role": "face", "auto": true, "timeout_secs": 0}), "timeout_secs"),
        (json!({"role": "face", "auto": true, "timeout_secs": 500}), "timeout_secs"),
        (json!({"role": "face", "timeout_secs": 5}), "timeout_secs"),
        (json!({"role": "face", "auto": "yes"}), "auto"),
    ] {
        let (code, err) = authed(&d, "POST", "/v1/captures/still", Some(Body::Json(body.clone())));
        assert_eq!((code, err["field"].as_str()), (400, Some(field)), "{body}: {err}");
    }
    let (code, err) = authed(&d, "GET", "/v1/cameras/ceiling/guidance", None);
    assert_eq!((code, err["field"].as_str()), (404, Some("role")), "{err}");
}
