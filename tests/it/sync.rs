//! Uploads: exactly once, byte-identical, through outages and permanent errors, both layouts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

#[test]
fn offline_then_back_delivers_everything_exactly_once() {
    let port = free_port();
    let env = Env::new(port);
    let ids: Vec<(String, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let m = env.manifest(&format!("e{i}"), &format!("salt-{i}"), |_| {});
            (env.enroll(&m), m.parent().unwrap().to_owned())
        })
        .collect();

    // Nobody listens on the port: sync exits 3 and everything stays queued, with the reason.
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 3, "");
    let list = env.list();
    assert_eq!(list.len(), 3);
    for e in &list {
        assert_eq!(e["state"], "queued", "{e}");
        assert!(e["attempts"].as_u64().unwrap() >= 1, "{e}");
        assert!(e["last_error"].as_str().unwrap().contains("connect"), "{e}");
        assert!(e["next_attempt_at"].is_string(), "{e}");
    }

    let sandbox = Sandbox::start(port);
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 0, "");
    let records = sandbox.records();
    assert_eq!(records["creates"], 3, "one create per enrollment: {records}");
    for (id, dir) in &ids {
        let shown = env.show(id);
        assert_eq!(shown["state"], "in_review", "{shown}");
        assert_eq!(shown["server_status"], "VIDEOREVIEW");
        assert_arrived_once(&records, &shown["request_pk"].as_u64().expect("pk is a number").to_string(), dir);
        // Local hashes (kept for audit after the local copy is erased) match the sources.
        let video = shown["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == "video").unwrap().clone();
        assert_eq!(video["sha256"], sha256_file(&dir.join("video.mp4")));
        assert_eq!(shown["erased"], true);
        assert!(!env.data_dir().join("spool").join(id).exists());
        // Its ciphertext, without a key now, waits for the next run to hand its blocks back.
        assert!(env.data_dir().join("erased").join(id).join("video.enc").is_file());
    }

    // Nothing left: a second sync sends nothing more, and discards what the first set aside.
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    assert_eq!(sandbox.records()["creates"], 3);
    assert_eq!(std::fs::read_dir(env.data_dir().join("erased")).unwrap().count(), 0, "the erased spools are discarded");
}

#[test]
fn a_permanent_error_fails_one_enrollment_while_others_flow_and_retry_requeues_it() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let bad = env.manifest("bad", "x", |m| m["customer"]["email"] = json!("refused@example.com"));
    let good = env.manifest("good", "y", |_| {});
    let bad_id = env.enroll(&bad);
    let good_id = env.enroll(&good);
    refuse(&sandbox, "evidences", "refused@example.com", 422, "Document type not accepted for this profile");

    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 3, "an enrollment became failed during the run (docs/design.md)");
    let shown = env.show(&bad_id);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["last_error"].as_str().unwrap().contains("Document type not accepted for this profile"), "{shown}");
    assert_eq!(env.show(&good_id)["state"], "in_review");
    let human = String::from_utf8(env.run(&["queue", "show", &bad_id]).output.stdout).unwrap();
    assert!(human.contains("Document type not accepted"), "{human}");

    // The operator fixes the cause and re-queues: it resumes at the evidences, no second create.
    http("DELETE", &sandbox.url("/_sandbox/rules"), None);
    let out = env.run(&["queue", "retry", &bad_id]);
    assert_exit(&out, 0, "");
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let shown = env.show(&bad_id);
    assert_eq!(shown["state"], "in_review", "{shown}");
    let records = sandbox.records();
    assert_eq!(records["creates"], 2);
    assert_arrived_once(
        &records,
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        bad.parent().unwrap(),
    );
}

#[test]
fn a_refused_create_fails_with_the_server_reason() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let m = env.manifest("m", "", |m| m["customer"]["email"] = json!("nope@example.com"));
    let id = env.enroll(&m);
    refuse(&sandbox, "create", "nope@example.com", 403, "You do not have permission to perform this action.");
    assert_exit(&env.run(&["sync", "--once"]), 3, "it failed");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "failed");
    assert!(shown["last_error"].as_str().unwrap().contains("403"), "{shown}");
    assert!(shown["request_pk"].is_null());
    // `queue purge` removes a failed enrollment and its files.
    assert_exit(&env.run(&["queue", "purge", &id]), 0, "");
    assert!(env.list().is_empty());
}

#[test]
fn legacy_layout_uploads_by_request_pk() {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "legacy", "");
    let m = env.manifest("m", "legacy", |_| {});
    let id = env.enroll(&m);
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "in_review", "{shown}");
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );
}

#[test]
fn run_picks_up_enrollments_queued_by_another_process() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let mut daemon = env
        .cmd()
        .arg("run")
        .env("KIOSK_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_guarded();
    // The daemon holds the worker lock: a second worker is refused instead of racing it.
    // Held: the kernel lists a flock on `worker.lock`'s inode (read without taking it, which
    // could make the daemon's own attempt fail).
    let lock = env.data_dir().join("worker.lock");
    wait_for(Duration::from_secs(20), || {
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(&lock).map(|m| m.ino()).unwrap_or(0);
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        let held = inode != 0 && locks.lines().any(|l| l.contains("FLOCK") && l.ends_with(&format!(":{inode} 0 EOF")));
        check(format!("inode {inode}; /proc/locks:\n{locks}"), held, ())
    });
    let second = env.run(&["sync", "--once"]);
    // Exit 3, "work remains": the daemon has it in hand.
    assert_exit(&second, 3, "");
    assert!(String::from_utf8_lossy(&second.stderr).contains("another worker is running"));

    let m = env.manifest("m", "daemon", |_| {});
    let queued_at = Instant::now();
    let id = env.enroll(&m);
    let shown = wait_for(Duration::from_secs(30), || {
        let s = env.show(&id);
        check(s["state"].to_string(), s["state"] == "in_review", s.clone())
    });
    eprintln!("enrolled → in_review through the running daemon in {:?}", queued_at.elapsed());
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );

    // SIGTERM: the daemon stops cleanly.
    let pid = daemon.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exit: {status:?}");
}

/// "Upload when connectivity allows": while the server is unreachable only probes go out, and the
/// moment it answers again every enrollment that waited for it is tried, whatever its backoff
/// said (here up to an hour).
#[test]
fn back_online_means_now_and_offline_costs_only_probes_new_optimizer() {
    back_online("current");
}

#[test]
fn back_online_means_now_and_offline_costs_only_probes_old_optimizer() {
    back_online("legacy");
}

fn back_online(layout: &str) {
    let port = free_port();
    let env = Env::with_config(port, layout, "probe_cap_secs = 0.2\n");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("backoff_base_secs = 0.05", "backoff_base_secs = 3600")
        .replace("backoff_cap_secs = 0.2", "backoff_cap_secs = 3600");
    std::fs::write(&env.config, text).unwrap();
    let log_path = env.dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = env
        .cmd()
        .arg("run")
        .env("KIOSK_AGENT_LOG", "kiosk_agent=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn_guarded();
    let ids: Vec<String> =
        (0..5).map(|i| env.enroll(&env.manifest(&format!("e{i}"), &format!("b{i}"), |_| {}))).collect();
    // The first attempt finds no server; the probe confirms it; a few more probes go out.
    wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log_path).unwrap().contains("server unreachable").then_some(())
    });
    let read_log = || std::fs::read_to_string(&log_path).unwrap();
    wait_for(Duration::from_secs(20), || (read_log().matches("op=\"probe\"").count() >= 4).then_some(()));
    let waiting: Vec<serde_json::Value> = env.list().into_iter().filter(|e| e["attempts"].as_u64() > Some(0)).collect();
    assert!(!waiting.is_empty());
    let due_ms: Vec<i64> = waiting
        .iter()
        .map(|e| {
            let at = humantime::parse_rfc3339(e["next_attempt_at"].as_str().unwrap()).unwrap();
            at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
        })
        .collect();

    let sandbox = Sandbox::start(port);
    let back = Instant::now();
    // A bound against a hang: the backoff alone would have waited up to an hour.
    wait_for(Duration::from_secs(60), || {
        let list = env.list();
        let states: Vec<_> = list.iter().map(|e| e["state"].to_string()).collect();
        // On a timeout, what the daemon said of the ones still waiting.
        let waiting: Vec<String> = list
            .iter()
            .filter(|e| e["state"] != "in_review")
            .map(|e| format!("{} {} attempts {} error {}", e["id"], e["state"], e["attempts"], e["last_error"]))
            .collect();
        let said: Vec<String> = read_log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("polling"))
            .map(str::to_owned)
            .collect();
        check(
            format!("{} | waiting: {waiting:?} | log: {:?}", states.join(" "), &said[said.len().saturating_sub(8)..]),
            list.iter().all(|e| e["state"] == "in_review"),
            (),
        )
    });
    let took = back.elapsed();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for due in &due_ms {
        assert!(now_ms < *due, "delivered before the backoff was due, not because it was due");
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    let log = read_log();
    let (offline, _) = log.split_once("server reachable again").expect("the worker noticed the server came back");
    let requests = offline.matches("http request").count();
    let probes = offline.matches("op=\"probe\"").count();
    eprintln!(
        "{layout}: offline: {probes} probes and {} other requests; back to all in review in {took:?}",
        requests - probes
    );
    assert!(requests - probes <= 2, "while offline only probes go out (besides the attempts that found it): {offline}");
    assert_eq!(sandbox.records()["creates"], ids.len());
}

/// `sync.video_windows`, in local time (`TZ`, here a zone 5 h 30 ahead of UTC): outside every
/// window the evidences go and the video waits, with the wait in the history; inside one the
/// video goes.
#[test]
fn videos_wait_for_their_window_and_evidences_do_not() {
    let sandbox = Sandbox::start(0);
    let utc_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let local_minutes = ((utc_secs / 60) + 5 * 60 + 30) % (24 * 60);
    let clock = |offset_minutes: i64| {
        let m = (local_minutes as i64 + offset_minutes).rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let closed = format!("[sync]\nvideo_windows = [\"{}-{}\"]\n", clock(120), clock(180));
    let env = Env::with_config(sandbox.addr.port(), "current", "");
    // The window list goes into the existing [sync] table.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let with_windows = |w: &str| text.replace("[sync]\n", w);
    std::fs::write(&env.config, with_windows(&closed)).unwrap();
    let manifest = env.manifest("m", "", |_| {});
    let id = env.enroll(&manifest);
    let out = env.cmd().args(["sync", "--once"]).env("TZ", "XST-5:30").output().unwrap();
    // Work remains (docs/design.md: exit 3), but nothing failed.
    assert_exit(&out, 3, "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 failed, 0 ended by the server, 1 pending"), "{out:?}");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "evidences_sent", "{shown}");
    assert!(shown["last_error"].is_null() && shown["attempts"] == 0, "no failure is counted: {shown}");
    let pk = shown["request_pk"].as_u64().unwrap().to_string();
    let records = sandbox.records();
    let r = request(&records, &pk);
    assert_eq!((r["evidences_uploads"].as_u64(), r["video_uploads"].as_u64()), (Some(1), Some(0)), "{r}");
    let waiting = shown["history"].as_array().unwrap().iter().find(|e| e["kind"] == "waiting").cloned();
    let detail =
        waiting.unwrap_or_else(|| panic!("the wait is in the history: {shown}"))["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("sync.video_windows (opens in 1h 5") || detail.contains("opens in 2h"), "{detail}");
    // The next attempt is when the window opens, about two hours from now.
    let next = humantime::parse_rfc3339(shown["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = next.duration_since(std::time::SystemTime::now()).unwrap().as_secs();
    assert!((7000..=7300).contains(&wait), "{wait}");

    // Inside a window (the same rule with UTC would be closed: the local zone is what counts).
    let open =
        format!("[sync]\nvideo_windows = [\"{}-{}\", \"{}-{}\"]\n", clock(300), clock(301), clock(-30), clock(30));
    std::fs::write(&env.config, with_windows(&open)).unwrap();
    let out = env.cmd().args(["sync", "--once"]).env("TZ", "XST-5:30").output().unwrap();
    assert_exit(&out, 0, "");
    assert_eq!(env.show(&id)["state"], "in_review");
    assert_arrived_once(&sandbox.records(), &pk, manifest.parent().unwrap());

    // A window that is not a time range is refused, naming it.
    std::fs::write(&env.config, with_windows("[sync]\nvideo_windows = [\"22:00-06:00\", \"after lunch\"]\n")).unwrap();
    let out = env.run(&["check-config"]);
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync.video_windows[1]: must be \"HH:MM-HH:MM\""), "{out:?}");
}
