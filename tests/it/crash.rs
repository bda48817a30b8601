//! Crash points: the process aborts (like kill -9 or a power cut) at each named point; after a
//! restart the queue is consistent, nothing acknowledged is lost, nothing half-written remains,
//! and every step reached the server once (creates: once, or recorded as an orphan).

use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use crate::util::*;

fn aborted(out: &Output) -> bool {
    out.status.signal() == Some(libc_sigabrt())
}

fn libc_sigabrt() -> i32 {
    6
}

/// A video big enough to span several encryption chunks, so "mid upload" is really mid-way.
const BIG_SALT_LEN: usize = 1 << 20;

fn big_salt(tag: &str) -> String {
    let mut s = tag.to_owned();
    while s.len() < BIG_SALT_LEN {
        s.push_str("0123456789abcdef");
    }
    s
}

#[test]
fn every_enqueue_crash_point_leaves_nothing_behind() {
    for point in ["enqueue.after_artifact", "enqueue.before_commit"] {
        let env = Env::new(free_port());
        let m = env.manifest("m", point, |_| {});
        let out = env.cmd().arg("enroll").arg(&m).env("KIOSK_AGENT_CRASH_AT", point).output().unwrap();
        assert!(aborted(&out), "{point}: the crash point was not reached: {:?}", out.status);
        assert!(out.stdout.is_empty(), "{point}: nothing may be acknowledged");
        // The next start finds the abandoned spool directory and removes it.
        assert!(env.list().is_empty(), "{point}");
        let spool: Vec<_> = std::fs::read_dir(env.data_dir().join("spool")).unwrap().flatten().collect();
        assert!(spool.is_empty(), "{point}: half-written files remain: {spool:?}");
        // And the queue works on.
        env.enroll(&m);
        assert_eq!(env.list().len(), 1);
    }
}

/// Enrolls, runs `sync --once` that aborts at `point`, then a clean `sync --once`; returns what
/// the test needs to check the outcome. With `warm`, one enrollment is delivered first, so the
/// queue knows a request_pk (the floor an orphan search starts from) when the crash comes.
/// `sync` holds extra `[sync]` settings (e.g. the orphan search mode).
fn crash_then_recover_with(point: &str, warm: bool, sync: &str) -> (Sandbox, Env, String, std::path::PathBuf, String) {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "current", sync);
    if warm {
        let w = env.manifest("w", "warm-up", |m| m["customer"]["email"] = serde_json::json!("warm@example.com"));
        env.enroll(&w);
        assert_exit(&env.run(&["sync", "--once"]), 0, "");
    }
    let m = env.manifest("m", &big_salt(point), |_| {});
    let id = env.enroll(&m);
    let out = env.cmd().args(["sync", "--once"]).env("KIOSK_AGENT_CRASH_AT", point).output().unwrap();
    assert!(
        aborted(&out),
        "{point}: the crash point was not reached: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let crashed_in = env.show(&id)["state"].as_str().unwrap().to_owned();
    let state = crashed_in.clone();
    assert!(["creating", "created", "evidences_sent"].contains(&state.as_str()), "{point}: after the crash: {state}");
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 0, &format!("{point}: {}", String::from_utf8_lossy(&out.stderr)));
    let shown = env.show(&id);
    assert_eq!(shown["state"], "in_review", "{point}: {shown}");
    assert_eq!(shown["orphan_check_pending"], false, "{point}: a batch run reconciles after delivery: {shown}");
    (sandbox, env, id, m.parent().unwrap().to_owned(), crashed_in)
}

fn crash_then_recover(point: &str) -> (Sandbox, Env, String, std::path::PathBuf, String) {
    crash_then_recover_with(point, true, "")
}

fn history_has(shown: &serde_json::Value, needle: &str) -> bool {
    shown["history"].as_array().unwrap().iter().any(|e| e["detail"].as_str().unwrap_or("").contains(needle))
}

#[test]
fn a_crash_before_the_create_is_sent_makes_no_orphan() {
    let (sandbox, env, id, dir, _) = crash_then_recover("create.before_request");
    let shown = env.show(&id);
    let records = sandbox.records();
    assert_eq!(records["creates"], 2, "the warm-up's and this one's");
    assert_arrived_once(&records, &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
    assert_eq!(shown["orphans"], serde_json::json!([]));
    assert!(history_has(&shown, "no orphan request"), "{shown}");
}

#[test]
fn a_crash_after_the_create_answer_records_the_orphan_with_its_request_pk() {
    let (sandbox, env, id, dir, _) = crash_then_recover("create.after_response");
    let shown = env.show(&id);
    let records = sandbox.records();
    assert_eq!(records["creates"], 3, "the warm-up's, the lost answer's request, and the new one");
    let used = shown["request_pk"].as_u64().expect("pk is a number").to_string();
    assert_arrived_once(&records, &used, &dir);
    let warm = env.list().into_iter().find(|e| e["id"] != id.as_str()).unwrap()["request_pk"]
        .as_u64()
        .expect("pk is a number")
        .to_string();
    let all: Vec<String> =
        records["requests"].as_array().unwrap().iter().map(|r| r["request_pk"].to_string()).collect();
    let orphan: Vec<&String> = all.iter().filter(|pk| pk.as_str() != used && **pk != warm).collect();
    assert_eq!(orphan.len(), 1);
    let orphan_pks: Vec<u64> = orphan.iter().map(|pk| pk.parse().unwrap()).collect();
    assert_eq!(shown["orphans"], serde_json::json!(orphan_pks), "{shown}");
    assert!(history_has(&shown, "orphan request(s) left on the server"), "{shown}");
    // Nothing is cancelled on the server without an operator.
    assert_eq!(request(&records, orphan[0])["status"], "VIDEOPENDING");
    // Found by asking the server for this customer's requests: its details were never read.
    assert_eq!(request(&records, orphan[0])["status_reads"], 0, "found by the search, not by reading it");
}

/// The daemon checks an enrollment for orphans as soon as it reaches review, even when its next
/// round of after-delivery work was planned far ahead (here: the next review read of an earlier
/// enrollment, an hour away). Before, a round's plan overwrote the "now" of an enrollment that
/// settled meanwhile, and its check (and the erasure of its evidence) waited for that hour.
#[test]
fn the_daemon_checks_for_orphans_as_soon_as_an_enrollment_is_in_review() {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(
        sandbox.addr.port(),
        "current",
        "review_poll_secs = 3600
",
    );
    let w = env.manifest("w", "warm-up", |m| m["customer"]["email"] = serde_json::json!("warm@example.com"));
    env.enroll(&w);
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let m = env.manifest("m", "lost answer", |_| {});
    let id = env.enroll(&m);
    let out = env.cmd().args(["sync", "--once"]).env("KIOSK_AGENT_CRASH_AT", "create.after_response").output().unwrap();
    assert!(aborted(&out), "the crash point was not reached: {:?}", out.status);
    // The retried create marks the check pending; it ends with the orphan found.
    assert_ne!(env.show(&id)["state"], "in_review");

    let _daemon = env.cmd().arg("run").stdout(std::process::Stdio::null()).spawn_guarded();
    // A bound against a hang, far below the hour the check used to wait.
    let shown = wait_for(std::time::Duration::from_secs(60), || {
        let shown = env.show(&id);
        let done = shown["state"] == "in_review" && shown["orphan_check_pending"] == false;
        check(&shown, done, shown.clone())
    });
    assert_eq!(shown["orphans"].as_array().map(Vec::len), Some(1), "{shown}");
}

/// `sync.orphan_search = "scan"`: the window between the last pk the queue knew and the one
/// returned is read, request by request (what a server without a search needs).
#[test]
fn a_scan_finds_the_orphan_by_reading_the_window() {
    let (sandbox, env, id, _, _) = crash_then_recover_with("create.after_response", true, "orphan_search = \"scan\"\n");
    let shown = env.show(&id);
    let records = sandbox.records();
    let orphans = shown["orphans"].as_array().unwrap().clone();
    assert_eq!(orphans.len(), 1, "{shown}");
    let orphan = orphans[0].as_u64().unwrap().to_string();
    assert_eq!(request(&records, &orphan)["status_reads"], 1, "read once, by the reconciliation");
}

/// `sync.orphan_search = "off"`: the possible orphan is recorded with its window for an
/// operator, and nothing is read or searched.
#[test]
fn with_the_search_off_the_possible_orphan_is_recorded_and_nothing_is_read() {
    let (sandbox, env, id, _, _) = crash_then_recover_with("create.after_response", true, "orphan_search = \"off\"\n");
    let shown = env.show(&id);
    assert_eq!(shown["orphans"], serde_json::json!([]));
    assert!(history_has(&shown, "possible orphan request") && history_has(&shown, "between request_pk"), "{shown}");
    // The orphan (the one request that never got an upload) was never read.
    let records = sandbox.records();
    let lost: Vec<&serde_json::Value> =
        records["requests"].as_array().unwrap().iter().filter(|r| r["evidences_uploads"] == 0).collect();
    assert_eq!(lost.len(), 1, "{records}");
    assert_eq!(lost[0]["status_reads"], 0, "{}", lost[0]);
}

#[test]
fn a_lost_create_answer_on_a_fresh_queue_is_a_possible_orphan_with_unknown_pk_and_nothing_is_read() {
    let (sandbox, env, id, dir, _) =
        crash_then_recover_with("create.after_response", false, "orphan_search = \"scan\"\n");
    let shown = env.show(&id);
    let records = sandbox.records();
    assert_eq!(records["creates"], 2);
    assert_arrived_once(&records, &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
    assert_eq!(shown["orphans"], serde_json::json!([]));
    assert!(history_has(&shown, "possible orphan request, pk unknown"), "{shown}");
    let lost = records["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_pk"].as_u64().map(|n| n.to_string()).as_deref() != shown["request_pk"].as_str())
        .unwrap();
    assert_eq!(lost["status_reads"], 0, "with no known floor nothing is read: {lost}");
}

#[test]
fn a_crash_after_the_evidences_upload_does_not_send_them_twice() {
    let (sandbox, env, id, dir, _) = crash_then_recover("evidences.after_response");
    let shown = env.show(&id);
    assert_arrived_once(&sandbox.records(), &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
    assert!(history_has(&shown, "server already has the evidences"), "{shown}");
}

#[test]
fn a_crash_mid_video_upload_resends_the_whole_video_once() {
    let (sandbox, env, id, dir, crashed_in) = crash_then_recover("video.mid_upload");
    // The crash left the video step uncommitted; the next run sent the whole video once.
    assert_eq!(crashed_in, "evidences_sent");
    let shown = env.show(&id);
    assert_arrived_once(&sandbox.records(), &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
}

#[test]
fn a_crash_after_the_video_upload_does_not_send_it_twice() {
    let (sandbox, env, id, dir, _) = crash_then_recover("video.after_response");
    let shown = env.show(&id);
    assert_arrived_once(&sandbox.records(), &shown["request_pk"].as_u64().expect("pk is a number").to_string(), &dir);
    assert!(history_has(&shown, "server already has the video"), "{shown}");
}

#[test]
fn every_listed_crash_point_is_exercised_here() {
    let source = std::fs::read_to_string(file!()).unwrap();
    let listed =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/faults.rs")).unwrap();
    let start = listed.find("CRASH_POINTS").unwrap();
    let table = &listed[start..listed[start..].find("];").unwrap() + start];
    for point in table.split('"').skip(1).step_by(2) {
        assert!(source.contains(&format!("\"{point}\"")), "crash point {point} has no test");
    }
}

/// A document upload that crashes before it is sent goes out once on the next run; one that
/// crashes after the server answered goes out again (the API cannot deduplicate) and the
/// history says the server may hold a duplicate. Either way the uid is recorded once, the
/// local copy is erased, and nothing else is lost.
#[test]
fn a_crash_around_a_document_upload_resends_it_and_says_so() {
    for (point, copies) in [("document.before_upload", 1), ("document.after_response", 2)] {
        let sandbox = Sandbox::start(0);
        let env = Env::with_config(sandbox.addr.port(), "current", "");
        let id = env.enroll(&env.manifest("m", point, |_| {}));
        assert_exit(&env.run(&["sync", "--once"]), 0, "");
        let doc = env.dir.path().join("d.pdf");
        std::fs::write(&doc, format!("%PDF-1.4\n% {point}\n%%EOF\n")).unwrap();
        assert_exit(&env.cmd().args(["document", &id, "upload"]).arg(&doc).output().unwrap(), 0, "");
        let pk = env.show(&id)["request_pk"].as_u64().expect("pk is a number").to_string();
        set_status(&sandbox, &pk, "ENROLLREADY");
        let out = env.cmd().args(["sync", "--once"]).env("KIOSK_AGENT_CRASH_AT", point).output().unwrap();
        assert!(aborted(&out), "{point}: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
        assert_exit(&env.run(&["sync", "--once"]), 0, point);
        let docs: serde_json::Value =
            serde_json::from_slice(&env.run(&["document", &id, "list", "--json"]).stdout).unwrap();
        assert_eq!(docs[0]["state"], "uploaded", "{point}: {docs}");
        let on_server = request(&sandbox.records(), &pk)["documents"].as_object().unwrap().len();
        assert_eq!(on_server, copies, "{point}");
        let shown = env.show(&id);
        assert!(history_has(&shown, "may hold a duplicate"), "{point}: {shown}");
        assert!(std::fs::read_dir(env.data_dir().join("documents")).unwrap().next().is_none(), "local copy erased");
    }
}
