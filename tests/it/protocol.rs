//! Both Optimizer generations, end to end: the sandbox answers each one's envelopes (golden
//! files), the agent ends enrollments on terminal statuses, bounds unknown ones, gives up on a
//! repeated HTTP 500, keeps personal data out of what it stores and logs, and cancels a request
//! only when an operator says so.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

const LAYOUTS: [(&str, &str, &str); 2] = [("current", "new", "/oneshot/api/v1"), ("legacy", "old", "/api/v1")];

fn golden(generation: &str, name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/responses/{generation}/{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Gives the agent billing credentials (user `billing@example.com`, this password in a file).
fn with_billing(env: &Env, password: &str) {
    let file = env.dir.path().join("billing");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[oneshot]\n",
        "[oneshot]\nbilling_username = \"billing@example.com\"\nbilling_password_file = \"billing\"\n",
    );
    std::fs::write(&env.config, text).unwrap();
}

#[test]
fn the_sandbox_answers_each_generation_in_its_own_envelope() {
    for (_, generation, base) in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let url = |p: &str| sandbox.url(&format!("{base}{p}"));
        let create = json!({"mobile_phone_number": "+34699999999", "email": "ana@example.com",
                            "registration_authority": "139", "profile": "PFnubeQAFCiudadano", "videoid_mode": 1});
        let check = |(code, body): (u16, Value), want_code: u16, name: &str| {
            assert_eq!((code, &body), (want_code, &golden(generation, name)), "{generation} {name}");
        };
        check(http("POST", &url("/videoid"), Some(create)), 200, "create");
        check(http("GET", &url("/request/45836"), None), 200, "status");
        check(http("GET", &url("/request/99"), None), if generation == "old" { 400 } else { 404 }, "not_found");
        // The new Optimizer is a FastAPI application: a body that fails its schema is a 422.
        let invalid = if generation == "old" { 400 } else { 422 };
        check(http("POST", &url("/videoid"), Some(json!({"email": "a@b.c"}))), invalid, "missing_parameters");
        check(http_raw("POST", &url("/videoid"), b"{not json"), invalid, "invalid_json");
        if generation == "old" {
            check(http("GET", &url("/hello"), None), 200, "hello");
        } else {
            // `/hello` is not documented for the new generation: it is an unknown path there.
            assert_eq!(http("GET", &url("/hello"), None).0, 404);
        }
        check(http("DELETE", &url("/request/45836"), None), 200, "cancel");
        assert_eq!(request(&sandbox.records(), "45836")["status"], "CANCELLED");
    }
}

#[test]
fn terminal_statuses_end_enrollments_with_the_servers_status_in_both_generations() {
    for (layout, _, _) in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let env = Env::with_config(sandbox.addr.port(), layout, "");
        let mut ids = Vec::new();
        for (i, (status, state)) in
            [("CANCELLED", "cancelled"), ("VIDEOID_REFUSED", "refused"), ("ERROR", "failed")].into_iter().enumerate()
        {
            let email = format!("terminal{i}@example.com");
            let m = env.manifest(&format!("t{i}"), status, |m| m["customer"]["email"] = json!(email));
            // The server acknowledges the video, then reports the status (a reviewer's or a
            // server-side decision the agent learns from its next read).
            rule(&sandbox, json!({"op": "video", "email": email, "status": 200, "lose_as": status}));
            ids.push((env.enroll(&m), status, state));
        }
        let out = env.run(&["sync", "--once"]);
        assert_exit(&out, 3, &format!("an enrollment failed: {}", String::from_utf8_lossy(&out.stderr)));
        for (id, status, state) in &ids {
            let shown = env.show(id);
            assert_eq!(shown["state"], *state, "{layout} {status}: {shown}");
            assert_eq!(shown["server_status"], *status);
            assert!(shown["last_error"].as_str().unwrap().contains(status), "{shown}");
        }
        // Nothing is polled or re-sent again: another run sends nothing.
        let before = sandbox.records();
        assert_exit(&env.run(&["sync", "--once"]), 0, "");
        let after = sandbox.records();
        for (id, _, _) in &ids {
            let pk = env.show(id)["request_pk"].as_u64().expect("pk is a number").to_string();
            assert_eq!(request(&before, &pk), request(&after, &pk), "{layout}: untouched after the end");
        }
    }
}

/// A status that does not move the enrollment on — one no public source names, or
/// `VIDEOPENDING` although both uploads were acknowledged — is polled, never answered with a
/// blind re-send, and after `sync.max_unknown_status_secs` fails with what to do; `queue retry`
/// follows the request again.
#[test]
fn a_status_that_does_not_move_on_is_polled_within_its_bound_then_fails_and_retry_follows_it() {
    for (layout, _, _) in LAYOUTS {
        for stuck in ["VIDEOARCHIVED", "VIDEOPENDING"] {
            let sandbox = Sandbox::start(0);
            let env = Env::with_config(sandbox.addr.port(), layout, "max_unknown_status_secs = 1\n");
            let m = env.manifest("u", stuck, |m| m["customer"]["email"] = json!("stuck@example.com"));
            rule(&sandbox, json!({"op": "video", "email": "stuck@example.com", "status": 200, "lose_as": stuck}));
            let id = env.enroll(&m);
            // First reads: recorded and polled (work remains).
            assert_exit(&env.run(&["sync", "--once"]), 3, "");
            let shown = env.show(&id);
            assert_eq!((shown["state"].as_str(), shown["server_status"].as_str()), (Some("video_sent"), Some(stuck)));
            assert!(shown["last_error"].as_str().unwrap().contains("polling"), "{shown}");
            // A wait is not dressed up as a server error (it once read "One-Shot server error 0").
            assert!(!shown["last_error"].as_str().unwrap().contains("server error"), "{shown}");
            // Past `sync.max_unknown_status_secs`, the next read fails it with what to do.
            std::thread::sleep(Duration::from_millis(1100));
            assert_exit(&env.run(&["sync", "--once"]), 3, "");
            let shown = env.show(&id);
            assert_eq!(shown["state"], "failed", "{layout} {stuck}: {shown}");
            let reason = shown["last_error"].as_str().unwrap();
            assert!(reason.contains(stuck) && reason.contains("queue retry"), "{reason}");
            let pk = shown["request_pk"].as_u64().expect("pk is a number").to_string();
            let r = request(&sandbox.records(), &pk).clone();
            assert_eq!(
                (r["evidences_uploads"].as_u64(), r["video_uploads"].as_u64()),
                (Some(1), Some(0)),
                "no blind re-send: {r}"
            );
            // The server moves on; the operator re-queues and the agent follows it to review.
            set_status(&sandbox, &pk, "VIDEOREVIEW");
            assert_exit(&env.run(&["queue", "retry", &id]), 0, "");
            assert_exit(&env.run(&["sync", "--once"]), 0, "");
            assert_eq!(env.show(&id)["state"], "in_review", "{layout} {stuck}");
        }
    }
}

/// The old Optimizer answers HTTP 500 for bad billing credentials: the same 500 on the same step
/// `sync.max_server_errors` times in a row fails the enrollment with the server's message (and
/// the count survives restarts). The new one's answer is assumed a 400: failed at once.
#[test]
fn bad_billing_credentials_fail_after_the_same_500_repeats_not_for_ever() {
    for (layout, generation, _) in LAYOUTS {
        let sandbox = Sandbox::start_with(0, &["--billing", "billing@example.com:right-password"]);
        let env = Env::with_config(sandbox.addr.port(), layout, "max_server_errors = 3\n");
        with_billing(&env, "wrong-password");
        let id = env.enroll(&env.manifest("b", "billing", |_| {}));
        let runs = if generation == "old" { 3 } else { 1 };
        for run in 1..=runs {
            assert_exit(&env.run(&["sync", "--once"]), 3, &format!("{layout} run {run}"));
            let state = env.show(&id)["state"].clone();
            assert_eq!(state == "failed", run == runs, "{layout} run {run}: {state}");
        }
        let shown = env.show(&id);
        let reason = shown["last_error"].as_str().unwrap();
        assert!(reason.contains("Invalid billing credentials"), "{layout}: {reason}");
        if generation == "old" {
            assert!(reason.contains("500 3 times in a row"), "{reason}");
        }
        // The wrong password never reaches what the agent keeps.
        let base64_wrong = "d3JvbmctcGFzc3dvcmQ=";
        assert!(!shown.to_string().contains("wrong-password") && !shown.to_string().contains(base64_wrong));
        assert_eq!(sandbox.records()["requests"], json!([]), "{layout}: no request was created");
    }
}

/// A server that echoes the request into its error must not put the customer's data or the
/// billing password into the database or the log.
#[test]
fn echoed_personal_data_is_redacted_from_errors_history_and_logs() {
    for (layout, _, _) in LAYOUTS {
        redaction(layout);
    }
}

fn redaction(layout: &str) {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), layout, "");
    with_billing(&env, "s3cret-billing");
    let email = "echo.victim@example.com";
    let id = env.enroll(&env.manifest("r", "redact", |m| m["customer"]["email"] = json!(email)));
    let echoed = format!(
        "invalid request {{\"email\": \"{email}\", \"mobile_phone_number\": \"+34699999999\", \
         \"billing_password\": \"czNjcmV0LWJpbGxpbmc=\", \"given_name\": \"Ana\", \"surname_1\": \"García\"}}"
    );
    refuse(&sandbox, "create", email, 400, &echoed);
    let out = env.cmd().args(["sync", "--once"]).env("KIOSK_AGENT_LOG", "debug").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let shown = env.show(&id);
    assert_eq!(shown["state"], "failed", "{shown}");
    let kept = format!("{shown}\n{log}");
    assert!(kept.contains("[redacted]"), "{kept}");
    for secret in [email, "+34699999999", "34699999999", "czNjcmV0LWJpbGxpbmc=", "s3cret-billing", "García"] {
        assert!(!kept.contains(secret), "{secret} leaked into:\n{kept}");
    }
    // And the database file holds none of it in clear either (the PII itself is encrypted).
    let db = std::fs::read(env.data_dir().join("queue.db")).unwrap_or_default();
    let wal = std::fs::read(env.data_dir().join("queue.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(email.len()).any(|w| w == email.as_bytes()), "the email is in the database in clear");
    }
}

#[test]
fn an_orphan_is_cancelled_only_by_an_operator() {
    for (layout, _, _) in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let env = Env::with_config(sandbox.addr.port(), layout, "");
        // One request on the server that this queue has never heard of (as an orphan would be).
        let (code, _) = http(
            "POST",
            &sandbox.url(if layout == "legacy" { "/api/v1/videoid" } else { "/oneshot/api/v1/videoid" }),
            Some(json!({"mobile_phone_number": "+34600000000", "email": "o@example.com",
                        "registration_authority": "139", "profile": "P"})),
        );
        assert_eq!(code, 200);
        let out = env.run(&["request", "--pk", "45836", "status"]);
        assert_exit(&out, 0, "");
        assert!(String::from_utf8_lossy(&out.stdout).contains("VIDEOPENDING"));
        let out = env.run(&["request", "--pk", "45836", "cancel"]);
        assert_exit(&out, 0, &format!("{layout}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(request(&sandbox.records(), "45836")["status"], "CANCELLED");
        // A path built from anything but digits is refused before it is sent.
        let out = env.run(&["request", "--pk", "../../hello", "status"]);
        assert_exit(&out, 2, "");
    }
}
