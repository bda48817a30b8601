//! Server-side behaviour: lost uploads, gateway headers, ordering, key provisioning, logging.

use serde_json::json;

use crate::util::*;

const EMAIL: &str = "ana.garcia@example.com";

#[test]
fn videoerror_resends_both_parts_and_videoincomplete_resends_the_video() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let a = env.manifest("a", "a", |m| m["customer"]["email"] = json!("a@example.com"));
    let b = env.manifest("b", "b", |m| m["customer"]["email"] = json!("b@example.com"));
    let (id_a, id_b) = (env.enroll(&a), env.enroll(&b));
    rule(
        &sandbox,
        json!({"op": "video", "email": "a@example.com", "status": 200, "lose_as": "VIDEOERROR", "times": 1}),
    );
    rule(
        &sandbox,
        json!({"op": "video", "email": "b@example.com", "status": 200, "lose_as": "VIDEOINCOMPLETE", "times": 1}),
    );

    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let records = sandbox.records();
    let shown_a = env.show(&id_a);
    assert_eq!(shown_a["state"], "in_review", "{shown_a}");
    let ra = request(&records, &shown_a["request_pk"].as_u64().expect("pk is a number").to_string());
    assert_eq!((ra["evidences_uploads"].as_u64(), ra["video_uploads"].as_u64()), (Some(2), Some(1)), "{ra}");
    assert_eq!(ra["video"]["sha256"], sha256_file(&a.parent().unwrap().join("video.mp4")));
    let shown_b = env.show(&id_b);
    let rb = request(&records, &shown_b["request_pk"].as_u64().expect("pk is a number").to_string());
    assert_eq!((rb["evidences_uploads"].as_u64(), rb["video_uploads"].as_u64()), (Some(1), Some(1)), "{rb}");
    for (shown, status) in [(&shown_a, "VIDEOERROR"), (&shown_b, "VIDEOINCOMPLETE")] {
        let history = shown["history"].as_array().unwrap();
        assert!(
            history
                .iter()
                .any(|e| e["detail"].as_str().unwrap().contains(&format!("server status {status}: re-send 1"))),
            "{shown}"
        );
    }
    assert_eq!(records["creates"], 2, "re-sends reuse the request");
}

#[test]
fn endless_videoerror_fails_after_the_resend_bound() {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "current", "max_resends = 2\n");
    let m = env.manifest("m", "", |_| {});
    let id = env.enroll(&m);
    rule(&sandbox, json!({"op": "video", "email": EMAIL, "status": 200, "lose_as": "VIDEOERROR"}));
    assert_exit(&env.run(&["sync", "--once"]), 3, "it failed");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["last_error"].as_str().unwrap().contains("VIDEOERROR after 2 re-sends"), "{shown}");
    let r = request(&sandbox.records(), &shown["request_pk"].as_u64().expect("pk is a number").to_string()).clone();
    assert_eq!(r["evidences_uploads"], 3, "first send and two re-sends: {r}");
}

#[test]
fn gateway_headers_from_the_configuration_are_sent() {
    let sandbox = Sandbox::start_with(0, &["--require-header", "X-Api-Key: k3y-for-gateway"]);
    let without = Env::new(sandbox.addr.port());
    let id = without.enroll(&without.manifest("m", "", |_| {}));
    assert_exit(&without.run(&["sync", "--once"]), 3, "it failed");
    let shown = without.show(&id);
    assert_eq!(shown["state"], "failed");
    assert!(shown["last_error"].as_str().unwrap().contains("401"), "{shown}");

    let with =
        Env::with_config(sandbox.addr.port(), "current", "[oneshot.headers]\n\"X-Api-Key\" = \"k3y-for-gateway\"\n");
    let m = with.manifest("m", "h", |_| {});
    let id = with.enroll(&m);
    assert_exit(&with.run(&["sync", "--once"]), 0, "");
    let shown = with.show(&id);
    assert_eq!(shown["state"], "in_review", "{shown}");
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );
}

#[test]
fn enrollments_are_sent_oldest_first() {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "current", "concurrency = 1\n");
    let ids: Vec<String> =
        (0..4).map(|i| env.enroll(&env.manifest(&format!("e{i}"), &i.to_string(), |_| {}))).collect();
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let pks: Vec<u64> = ids
        .iter()
        .map(|id| env.show(id)["request_pk"].as_u64().expect("pk is a number").to_string().parse().unwrap())
        .collect();
    assert!(pks.windows(2).all(|w| w[0] < w[1]), "created in enroll order: {pks:?}");
}

/// The unit hands the key in through `$CREDENTIALS_DIRECTORY`; a command run without it finds
/// no key and refuses (exit 2, saying where it looked) instead of creating one, and a different
/// key is refused at start by its fingerprint instead of failing every queued enrollment.
#[test]
fn the_master_key_comes_from_credentials_and_no_command_creates_or_swaps_one() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    std::fs::remove_file(env.data_dir().join("master.key")).unwrap();
    let creds = env.dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("kiosk-agent.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let with_creds = |args: &[&str]| env.cmd().args(args).env("CREDENTIALS_DIRECTORY", &creds).output().unwrap();
    let m = env.manifest("m", "", |_| {});
    let out = env.cmd().arg("enroll").arg(&m).env("CREDENTIALS_DIRECTORY", &creds).output().unwrap();
    assert_exit(&out, 0, "");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Without the credential: no key, exit 2 naming where it looked, and no key file appears.
    let out = env.run(&["sync", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &err);
    assert!(err.contains("no master key") && err.contains("master.key") && err.contains("key init"), "{err}");
    assert!(!env.data_dir().join("master.key").exists(), "no command creates a key by accident");

    // A different key: refused at start by its fingerprint; nothing is marked failed.
    assert_exit(&env.run(&["key", "init"]), 0, "");
    let out = env.run(&["sync", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &err);
    assert!(err.contains("is not the one the queue"), "{err}");
    let again = env.run(&["key", "init"]);
    assert_exit(&again, 2, "key init never replaces a key");
    let shown: serde_json::Value =
        serde_json::from_slice(&with_creds(&["queue", "show", &id, "--json"]).stdout).unwrap();
    assert_eq!(shown["state"], "queued", "{shown}");

    // With the unit's credential it goes through.
    let out = with_creds(&["sync", "--once"]);
    assert_exit(&out, 0, "");
    let shown: serde_json::Value =
        serde_json::from_slice(&with_creds(&["queue", "show", &id, "--json"]).stdout).unwrap();
    assert_eq!(shown["state"], "in_review", "{shown}");
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );
}

#[test]
fn debug_logs_carry_no_personal_data_or_secrets() {
    let sandbox = Sandbox::start_with(0, &["--require-header", "X-Api-Key: k3y-for-gateway"]);
    let env =
        Env::with_config(sandbox.addr.port(), "current", "[oneshot.headers]\n\"X-Api-Key\" = \"k3y-for-gateway\"\n");
    let ok = env.manifest("ok", "1", |_| {});
    let refused = env.manifest("refused", "2", |m| m["customer"]["email"] = json!("refused@example.com"));
    env.enroll(&ok);
    env.enroll(&refused);
    rule(&sandbox, json!({"op": "create", "email": "refused@example.com", "status": 403, "details": "Forbidden"}));
    let out = env.cmd().args(["sync", "--once"]).env("KIOSK_AGENT_LOG", "trace").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("request created") && log.contains("enrollment failed"),
        "the log must say what happened:\n{log}"
    );
    for secret in ["k3y-for-gateway", EMAIL, "refused@example.com", "+34699999999", "García", "12345678Z"] {
        assert!(!log.contains(secret), "log leaks {secret:?}:\n{log}");
    }
}
