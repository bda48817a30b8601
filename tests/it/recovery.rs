//! Start-up recovery, shutdown, disk and clock behaviour, and faults seen through the binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

#[test]
fn a_damaged_database_is_reported_and_left_for_inspection() {
    let env = Env::new(free_port());
    env.enroll(&env.manifest("m", "", |_| {}));
    let db = env.data_dir().join("queue.db");
    // Clobber the header: SQLite no longer recognises the file.
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::remove_file(env.data_dir().join("queue.db-wal"));
    for args in [&["sync", "--once"][..], &["queue", "list"][..]] {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 4, &format!("{args:?}: {stderr}"));
        assert!(
            stderr.contains("queue.db") && stderr.contains("damaged") && stderr.contains("left in place"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file is left exactly as it was");
}

#[test]
fn a_damaged_artifact_fails_its_enrollment_while_the_others_flow() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let bad = env.enroll(&env.manifest("bad", "1", |_| {}));
    let good_manifest = env.manifest("good", "2", |_| {});
    let good = env.enroll(&good_manifest);
    // Flip one byte of the encrypted video (bit rot, a bad sector).
    let enc = env.data_dir().join("spool").join(&bad).join("video.enc");
    let mut bytes = std::fs::read(&enc).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&enc, &bytes).unwrap();

    assert_exit(&env.run(&["sync", "--once"]), 3, "one enrollment failed");
    let shown = env.show(&bad);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["last_error"].as_str().unwrap().contains("video"), "{shown}");
    let records = sandbox.records();
    let good_shown = env.show(&good);
    assert_eq!(good_shown["state"], "in_review");
    assert_arrived_once(
        &records,
        &good_shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        good_manifest.parent().unwrap(),
    );
    // The damaged video never reached the server.
    assert!(records["requests"].as_array().unwrap().iter().all(|r| r["video_uploads"].as_u64().unwrap() <= 1));
    assert_eq!(records["requests"].as_array().unwrap().iter().filter(|r| r["video"].is_object()).count(), 1);
}

#[test]
fn sigterm_during_a_stalled_upload_exits_promptly_and_consistently() {
    let sandbox = Sandbox::start_with(0, &["--faults", "video:stall=1.0;stall_secs=120"]);
    let env = Env::new(sandbox.addr.port());
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("request_timeout_secs = 10", "request_timeout_secs = 10\nupload_timeout_secs = 300");
    std::fs::write(&env.config, text).unwrap();
    let m = env.manifest("m", "", |_| {});
    let id = env.enroll(&m);
    let mut daemon =
        env.cmd().arg("run").env("KIOSK_AGENT_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn_guarded();
    // Wait until the evidences are in: the video upload is now hanging on the server.
    wait_for(Duration::from_secs(30), || {
        let r = sandbox.records();
        check(&r["requests"], r["requests"][0]["evidences_uploads"] == 1, ())
    });
    wait_for(Duration::from_secs(30), || {
        let upload = env.show(&id)["upload"].clone();
        check(format!("upload {upload}"), !upload.is_null(), ())
    });
    let asked = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(asked.elapsed() < Duration::from_secs(10), "the daemon must exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("exited {:?} after SIGTERM", asked.elapsed());
    assert!(status.success(), "{status:?}");
    // Consistent: the video step was never committed, and the next run finishes it once.
    assert_eq!(env.show(&id)["state"], "evidences_sent");
    http("DELETE", &sandbox.url("/_sandbox/faults"), None);
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "in_review");
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );
}

#[test]
fn retry_after_is_honoured_and_offline_means_exit_3_then_delivery() {
    let sandbox = Sandbox::start_with(0, &["--faults", "create:503=1.0;retry_after=2"]);
    let env = Env::new(sandbox.addr.port());
    let m = env.manifest("m", "", |_| {});
    let id = env.enroll(&m);
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 3, "");
    let shown = env.show(&id);
    assert!(shown["last_error"].as_str().unwrap().contains("503"), "{shown}");
    // The next attempt is scheduled no earlier than the server asked (2 s), not after the
    // 0.05 s backoff of this configuration.
    let next = humantime::parse_rfc3339(shown["next_attempt_at"].as_str().unwrap()).unwrap();
    let updated = humantime::parse_rfc3339(shown["updated_at"].as_str().unwrap()).unwrap();
    assert!(next.duration_since(updated).unwrap() >= Duration::from_millis(1900), "{shown}");

    // Offline: connections refused, work stays queued; back online, it is delivered.
    http("DELETE", &sandbox.url("/_sandbox/faults"), None);
    http("POST", &sandbox.url("/_sandbox/offline?secs=3"), None);
    wait_for(Duration::from_secs(3), || {
        check("still accepting connections", std::net::TcpStream::connect(sandbox.addr).is_err(), ())
    });
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 3, "");
    assert!(env.show(&id)["last_error"].as_str().unwrap().contains("connect"));
    wait_for(Duration::from_secs(20), || (std::net::TcpStream::connect(sandbox.addr).is_ok()).then_some(()));
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let shown = env.show(&id);
    assert_eq!(shown["state"], "in_review");
    assert_arrived_once(
        &sandbox.records(),
        &shown["request_pk"].as_u64().expect("pk is a number").to_string(),
        m.parent().unwrap(),
    );
}

#[test]
fn a_wall_clock_jump_does_not_hold_work_back() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    // As if the clock had jumped: the stored next attempt lies in the year 2100. Scheduling runs
    // on the monotonic clock, so the stored time is information, not a gate.
    let db = rusqlite::Connection::open(env.data_dir().join("queue.db")).unwrap();
    db.execute("UPDATE enrollments SET next_attempt_at = 4102444800000, attempts = 3", []).unwrap();
    drop(db);
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    assert_eq!(env.show(&id)["state"], "in_review");
}

#[test]
fn queue_list_tells_offline_from_stuck() {
    let env = Env::new(free_port());
    env.enroll(&env.manifest("a", "1", |_| {}));
    env.enroll(&env.manifest("b", "2", |_| {}));
    assert_exit(&env.run(&["sync", "--once"]), 3, "");
    let out = env.run(&["queue", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 pending") && text.contains("oldest") && text.contains("bytes"), "{text}");
    assert!(text.contains("cannot connect"), "the reason is shown: {text}");
    let list = env.list();
    for e in &list {
        for key in ["attempts", "last_error", "next_attempt_at", "bytes", "created_at"] {
            assert!(!e[key].is_null(), "{key} in {e}");
        }
    }
    let _ = json!(null);
}

#[test]
fn start_up_verification_fails_damaged_evidence_that_is_not_being_sent() {
    // The server stalls the first create for longer than the client waits, so the worker is
    // busy with the oldest enrollment while verification looks at the others.
    let sandbox = Sandbox::start_with(0, &["--faults", "create:stall=1.0;stall_secs=5"]);
    let env = Env::with_config(sandbox.addr.port(), "current", "concurrency = 1\n");
    let text =
        std::fs::read_to_string(&env.config).unwrap().replace("request_timeout_secs = 10", "request_timeout_secs = 2");
    std::fs::write(&env.config, text).unwrap();
    let ids: Vec<String> =
        (0..3).map(|i| env.enroll(&env.manifest(&format!("e{i}"), &i.to_string(), |_| {}))).collect();
    let image = env.data_dir().join("spool").join(&ids[1]).join("document_front.enc");
    let mut bytes = std::fs::read(&image).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&image, &bytes).unwrap();

    assert_exit(&env.run(&["sync", "--once"]), 3, "");
    let damaged = env.show(&ids[1]);
    assert_eq!(damaged["state"], "failed", "{damaged}");
    assert!(damaged["last_error"].as_str().unwrap().contains("document_front"), "{damaged}");
    for intact in [&ids[0], &ids[2]] {
        let state = env.show(intact)["state"].as_str().unwrap().to_owned();
        assert!(["queued", "creating"].contains(&state.as_str()), "intact evidence keeps waiting: {state}");
    }
}

/// Every file under `dir` with its bytes, to show that something was left exactly as it was.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// A `queue.db` deleted or truncated to nothing beside an encrypted spool is a lost queue, not
/// a new one: every queue command exits 4 naming it, nothing is created, the spool is left
/// exactly as it was, doctor fails, and `queue salvage` lists the spool and (with --discard)
/// moves it aside so that a new queue can start.
#[test]
fn a_lost_database_is_never_read_as_an_empty_queue() {
    for how in ["deleted", "truncated"] {
        let env = Env::new(free_port());
        let id = env.enroll(&env.manifest("m", "", |_| {}));
        let data = env.data_dir();
        let db = data.join("queue.db");
        for extra in ["queue.db-wal", "queue.db-shm"] {
            let _ = std::fs::remove_file(data.join(extra));
        }
        match how {
            "deleted" => std::fs::remove_file(&db).unwrap(),
            _ => std::fs::write(&db, b"").unwrap(),
        }
        let spool = snapshot(&data.join("spool"));
        assert!(!spool.is_empty());
        let other = env.manifest("n", "2", |_| {});
        for args in [
            &["queue", "list"][..],
            &["queue", "list", "--json"][..],
            &["queue", "show", &id][..],
            &["sync", "--once"][..],
            &["enroll", other.to_str().unwrap()][..],
        ] {
            let out = env.run(args);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_exit(&out, 4, &format!("{how}: {args:?}: {stderr}"));
            assert!(stderr.contains("queue.db") && stderr.contains("1 enrollment(s)"), "{how}: {args:?}: {stderr}");
            assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{how}: {args:?} printed a queue");
        }
        let doctor = env.run(&["doctor"]);
        assert_ne!(doctor.status.code(), Some(0), "{how}: doctor must not say the queue is intact");
        assert!(String::from_utf8_lossy(&doctor.stdout).contains("queue.db"), "{how}: {doctor:?}");
        assert_eq!(snapshot(&data.join("spool")), spool, "{how}: the spool is untouched");
        assert_eq!(db.exists(), how == "truncated", "{how}: no database was created");

        let salvage = env.run(&["queue", "salvage"]);
        assert_exit(&salvage, 0, "");
        let said = String::from_utf8_lossy(&salvage.stdout).into_owned();
        assert!(said.contains(&id) && said.contains("video.enc") && said.contains("restore queue.db"), "{said}");
        assert_eq!(snapshot(&data.join("spool")), spool, "{how}: listing changes nothing");
        // Once the evidence is captured again, a new queue may start; the old spool is kept aside.
        assert_exit(&env.run(&["queue", "salvage", "--discard"]), 0, "");
        let new = env.enroll(&other);
        let list = env.run(&["queue", "list", "--json"]);
        assert_exit(&list, 0, "");
        let ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&list.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, [new], "{how}");
        let aside = std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("lost-"))
            .expect("the old spool, moved aside");
        assert_eq!(snapshot(&aside.path().join("spool")).len(), spool.len(), "{how}: the old spool is kept whole");
    }
}

/// Malformed pages met after the database opened are damage too (exit 4), not a crash-loop.
#[test]
fn malformed_pages_are_damage_too() {
    let env = Env::new(free_port());
    for n in 0..3 {
        env.enroll(&env.manifest(&format!("m{n}"), &n.to_string(), |_| {}));
    }
    let data = env.data_dir();
    let db = data.join("queue.db");
    // Fold the write-ahead log in, then scribble over the last pages (the tables the enrollments
    // filled last), leaving the header and the schema readable: the database opens, then a read
    // meets the damage.
    let out = env.run(&["queue", "list"]);
    assert_exit(&out, 0, "");
    let folded = rusqlite::Connection::open(&db).unwrap();
    folded.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    folded.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(folded);
    let mut bytes = std::fs::read(&db).unwrap();
    let from = bytes.len() - 2 * 4096;
    for (i, b) in bytes.iter_mut().enumerate().skip(from) {
        *b = (i % 251) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    for args in [&["queue", "list"][..], &["sync", "--once"][..]] {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 4, &format!("{args:?}: {stderr}"));
        assert!(stderr.contains("malformed") || stderr.contains("damaged"), "{args:?}: {stderr}");
    }
}

/// `sync --once` never ends quietly when the retention policy erased evidence: the summary
/// counts it and the exit is 3 (an operator must know), even with nothing else to report.
#[test]
fn a_batch_run_that_erased_evidence_by_retention_says_so_and_exits_3() {
    let env = Env::with_config(free_port(), "current", "");
    let text =
        std::fs::read_to_string(&env.config).unwrap().replace("[storage]\n", "[storage]\nmax_retention_days = 1\n");
    std::fs::write(&env.config, text).unwrap();
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    // It has waited two days, as the clocks measured it (see `queue::clock`).
    let db = rusqlite::Connection::open(env.data_dir().join("queue.db")).unwrap();
    db.execute("UPDATE enrollments SET waited_ms = ?1 WHERE id = ?2", rusqlite::params![2 * 86_400_000i64, id])
        .unwrap();
    drop(db);
    let out = env.run(&["sync", "--once"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_exit(&out, 3, &said);
    assert!(said.contains("1 erased by retention"), "{said}");
    assert_eq!(env.show(&id)["erased"], true, "{}", env.show(&id));
}

/// End to end with a shifted clock: enrollments queued while the wall clock was 400 days behind
/// and 400 days ahead are both delivered once it is corrected, none erased by the retention
/// policy (30 days) and none held back.
#[test]
fn enrollments_queued_under_a_wrong_clock_are_delivered_once_it_is_corrected() {
    const DAYS_400: i64 = 400 * 86_400;
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let mut ids = Vec::new();
    for (n, offset) in [-DAYS_400, DAYS_400].into_iter().enumerate() {
        let manifest = env.manifest(&format!("m{n}"), &n.to_string(), |_| {});
        let out = env
            .cmd()
            .env("KIOSK_AGENT_TEST_WALL_OFFSET_SECS", offset.to_string())
            .arg("enroll")
            .arg(&manifest)
            .output()
            .unwrap();
        assert_exit(&out, 0, &String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    // The clock is corrected: a batch run, retention checked first.
    let out = env.run(&["sync", "--once"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_exit(&out, 0, &format!("{said}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(said.contains("2 delivered") && said.contains("0 erased by retention"), "{said}");
    for id in &ids {
        let shown = env.show(id);
        assert_eq!(shown["state"], "in_review", "{shown}");
        // Erased after reaching review, as configured; never by the retention policy.
        let history = shown["history"].as_array().unwrap();
        assert!(history.iter().all(|e| e["kind"] != "retention_erased"), "{shown}");
        assert!(history.iter().any(|e| e["kind"] == "erased"), "{shown}");
    }
}

/// `queue verify` decrypts and hashes what waits to be sent, documents included: all intact is
/// exit 0; a flipped byte in a queued document or in an artifact is exit 4 naming which.
#[test]
fn queue_verify_finds_a_damaged_document_and_a_damaged_artifact() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    // In review (documents wait there for the approval), then one more still to send.
    let reviewed = env.enroll(&env.manifest("m0", "0", |_| {}));
    assert_exit(&env.run(&["sync", "--once"]), 0, "the first is delivered");
    let pdf = env.dir.path().join("contract.pdf");
    std::fs::write(&pdf, b"%PDF-1.4\n% the service contract\n%%EOF\n").unwrap();
    let out = env.run(&["document", &reviewed, "upload", pdf.to_str().unwrap()]);
    assert_exit(&out, 0, &String::from_utf8_lossy(&out.stderr));
    drop(sandbox);
    let id = env.enroll(&env.manifest("m1", "1", |_| {}));
    let out = env.run(&["queue", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_exit(&out, 0, &said);
    assert!(
        said.contains("1 pending enrollment(s): 0 damaged") && said.contains("documents waiting to be sent: 0 damaged"),
        "{said}"
    );
    let flip = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(path, bytes).unwrap();
    };
    let documents: Vec<_> =
        std::fs::read_dir(env.data_dir().join("documents")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(documents.len(), 1, "{documents:?}");
    flip(&documents[0]);
    let out = env.run(&["queue", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_exit(&out, 4, &said);
    assert!(said.contains("damaged: document contract.pdf of") && said.contains(&reviewed), "{said}");
    assert_eq!(env.show(&reviewed)["state"], "in_review", "a damaged document does not fail the enrollment: {said}");
    flip(&documents[0]);
    let video = std::fs::read_dir(env.data_dir().join("spool").join(&id))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    flip(&video);
    let out = env.run(&["queue", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_exit(&out, 4, &said);
    assert!(
        said.contains(&format!("damaged: {id}")) && said.contains("documents waiting to be sent: 0 damaged"),
        "{said}"
    );
    assert_eq!(env.show(&id)["state"], "failed");
}
