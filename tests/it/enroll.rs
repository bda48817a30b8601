//! `enroll`: bad input is refused with exit 2, a message naming field and rule, and no trace.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::json;

use crate::util::*;

/// Runs `enroll` on a manifest edited by `edit`; asserts exit 2, the message, and that nothing
/// was written: on a fresh installation the data directory holds only what `key init` made (the
/// keys and the API token).
fn check(extra_config: &str, edit: impl FnOnce(&mut serde_json::Value), expected: &[&str]) {
    let env = Env::with_config(free_port(), "current", extra_config);
    let manifest = env.manifest("m", "", edit);
    let out = env.cmd().arg("enroll").arg(&manifest).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &format!("stderr: {stderr}"));
    for needle in expected {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    assert!(out.stdout.is_empty(), "no id is printed for a refused enrollment");
    let left: Vec<_> = std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "master.key" && n != "device.key" && n != "api.token")
        .collect();
    assert!(left.is_empty(), "a refused enrollment must leave nothing on disk: {left:?}");
}

#[test]
fn invalid_fields_are_refused_naming_field_and_rule() {
    check("", |m| m["ocr_data"]["id_document_country"] = json!("XX"), &["ocr_data.id_document_country", "ISO 3166-1"]);
    check("", |m| m["customer"]["mobile_phone_number"] = json!("0034699"), &["customer.mobile_phone_number", "E.164"]);
    check("", |m| m["similarity_level"] = json!(120), &["similarity_level", "0 to 100"]);
    check("", |m| m["colour"] = json!("red"), &["colour", "unknown key"]);
}

#[test]
fn missing_and_wrong_files_are_refused() {
    check("", |m| m["images"]["document_front"] = json!("nope.jpg"), &["images.document_front", "cannot open"]);
    check("", |m| m["images"]["document_photo"] = json!("video.mp4"), &["images.document_photo", "JPEG or PNG"]);
    check("", |m| m["video"] = json!("front.jpg"), &["video", "MP4"]);
}

#[test]
fn oversize_artifacts_are_refused_with_the_limit() {
    check("[evidence]\nmax_image_bytes = 2000\n", |_| {}, &["images.document_front", "over the limit of 2000 bytes"]);
    check("[evidence]\nmax_video_bytes = 1000\n", |_| {}, &["video", "over the limit of 1000 bytes"]);
}

#[test]
fn a_manifest_that_is_not_json_is_refused() {
    let env = Env::new(free_port());
    let path = env.dir.path().join("bad.json");
    std::fs::write(&path, "{ not json").unwrap();
    let out = env.cmd().arg("enroll").arg(&path).output().unwrap();
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    let out = env.cmd().args(["enroll", "/nonexistent/manifest.json"]).output().unwrap();
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/manifest.json"));
}

#[test]
fn refusals_leave_an_existing_queue_unchanged() {
    let env = Env::new(free_port());
    let good = env.manifest("good", "a", |_| {});
    let id = env.enroll(&good);
    let bad = env.manifest("bad", "b", |m| m["video"] = json!("front.jpg"));
    let out = env.cmd().arg("enroll").arg(&bad).output().unwrap();
    assert_exit(&out, 2, "");
    // A video that only the probe refuses (an MP4 header, then noise), the last check to
    // answer, leaves nothing either.
    let unplayable = env.manifest("unplayable", "c", |_| {});
    let mut noise = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2".to_vec();
    noise.extend((0..4_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(unplayable.with_file_name("video.mp4"), noise).unwrap();
    let out = env.cmd().arg("enroll").arg(&unplayable).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &stderr);
    assert!(stderr.contains("video") && stderr.contains("not a playable video"), "{stderr}");
    let list = env.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    let spool: Vec<_> = std::fs::read_dir(env.data_dir().join("spool")).unwrap().flatten().collect();
    assert_eq!(spool.len(), 1, "only the accepted enrollment has files");
}

#[test]
fn spool_limit_refuses_new_work_and_keeps_the_queue() {
    let env = Env::with_config(free_port(), "current", "");
    let first = env.manifest("one", "1", |_| {});
    env.enroll(&first);
    // Lower the limit below what is already queued plus one more enrollment.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("min_free_bytes = 0", "min_free_bytes = 0\nmax_spool_bytes = 60000");
    std::fs::write(&env.config, text).unwrap();
    let second = env.manifest("two", "2", |_| {});
    let out = env.cmd().arg("enroll").arg(&second).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &stderr);
    assert!(stderr.contains("storage.max_spool_bytes") && stderr.contains("bytes missing"), "{stderr}");
    assert_eq!(env.list().len(), 1, "queued evidence is never evicted");
}

#[test]
fn concurrent_first_enrolls_on_a_fresh_data_dir_all_succeed() {
    // Several kiosks' front ends may call `enroll` at once right after installation: the first
    // ones race to create the database (the key was created on purpose by `key init`). All must
    // succeed, and no second key may appear.
    let env = Env::new(free_port());
    let manifest = env.manifest("m", "", |_| {});
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd()
                .arg("enroll")
                .arg(&manifest)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn_guarded()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 0, "");
    }
    let list = env.list();
    assert_eq!(list.len(), 8);
    // Every enrollment decrypts with the one key that was kept: `queue show` reads them all and
    // the evidence of each is intact (checked by uploading in the sync tests; here, by count).
    let mut keys: Vec<String> = std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("key"))
        .collect();
    keys.sort();
    assert_eq!(keys, ["device.key", "master.key"], "the keys key init made, no other and no temporaries");
}

#[test]
fn too_little_free_disk_refuses_new_work_saying_how_much_is_missing() {
    let env = Env::new(free_port());
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("min_free_bytes = 0", "min_free_bytes = 1000000000000000000");
    std::fs::write(&env.config, text).unwrap();
    let out = env.cmd().arg("enroll").arg(env.manifest("m", "", |_| {})).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &stderr);
    assert!(stderr.contains("storage.min_free_bytes") && stderr.contains("bytes missing"), "{stderr}");
    assert!(env.list().is_empty());
}

/// The running probe standby whose parent is `daemon` (its pid), if one is waiting.
fn standby_of(daemon: u32) -> Option<u32> {
    let running = |pid: u32| -> Option<(u32, char)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid …: the command name may hold spaces, so read after the ')'.
        let mut after = stat.rsplit_once(')')?.1.split_whitespace();
        let state = after.next()?.chars().next()?;
        Some((after.next()?.parse().ok()?, state))
    };
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(
        |&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            matches!(running(pid), Some((ppid, state)) if ppid == daemon && state != 'Z')
                && cmdline.split(|&b| b == 0).any(|arg| arg == b"probe-standby")
        },
    )
}

/// Whether `pid` still runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

#[test]
fn a_running_daemon_probes_each_video_in_a_standby_of_its_own_and_takes_it_down_on_stop() {
    let sandbox = Sandbox::start(0);
    let daemon = crate::api::start(sandbox.addr.port(), "");
    let socket = daemon.env.data_dir().join("probe.sock");
    let waiting = |previous: Option<u32>| {
        wait_for(Duration::from_secs(20), || {
            let now = standby_of(daemon.child.id());
            let seen = format!("socket {}, standby {now:?} (before: {previous:?})", socket.exists());
            crate::util::check(seen, socket.exists() && now.is_some() && now != previous, now.unwrap_or(0))
        })
    };
    // The socket is there from the start; the first standby comes when a video is waiting
    // (or half a minute after the start).
    wait_for(Duration::from_secs(20), || crate::util::check(format!("{}", socket.display()), socket.exists(), ()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the standby socket is this user's only");
    daemon.env.enroll(&daemon.env.manifest("m0", "0", |_| {}));
    let first = waiting(None);

    // A playable video: queued, with the facts the standby found; that standby is gone and the
    // next one waits.
    let id = daemon.env.enroll(&daemon.env.manifest("m", "", |_| {}));
    let second = waiting(Some(first));
    assert!(!alive(first), "a standby probes one video and exits");
    assert_eq!(daemon.env.show(&id)["state"].as_str().map(|s| s != "failed"), Some(true));

    // A file that looks like an MP4 but holds no video: refused as the helper refuses it,
    // naming the field, and nothing is queued.
    let manifest = daemon.env.manifest("bad", "", |_| {});
    std::fs::write(manifest.with_file_name("video.mp4"), b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isomno more")
        .unwrap();
    let out = daemon.env.cmd().arg("enroll").arg(&manifest).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &format!("stderr: {stderr}"));
    assert!(stderr.contains("video") && stderr.contains("is not a playable video"), "{stderr}");
    // The standby that waits now (seen once: a second look at /proc raced its start in CI).
    let last = waiting(Some(second));
    assert_eq!(daemon.env.list().len(), 2, "the refused video queued nothing");

    // Stopped: the socket goes, and so does the waiting standby.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_for(Duration::from_secs(20), || {
        let seen = format!("socket {}, standby alive {}", socket.exists(), alive(last));
        crate::util::check(seen, !socket.exists() && !alive(last), ())
    });
    // With no daemon, enroll starts a helper of its own.
    daemon.env.enroll(&daemon.env.manifest("after", "after", |_| {}));
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path).into_iter().map(|f| format!("{}/{f}", entry.file_name().to_string_lossy())));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// A refused manifest: its name, the edit that makes it bad, and the field the refusal names.
type Refusal = (&'static str, fn(&mut serde_json::Value), &'static str);

#[test]
fn with_a_queue_in_place_a_refused_enrollment_leaves_nothing_though_its_video_was_being_sealed() {
    // Once the queue exists, enroll seals the video while the rest is checked (into an unnamed
    // file): a refusal, whatever it is about, must still leave the spool as it was.
    let env = Env::new(free_port());
    let first = env.enroll(&env.manifest("m", "", |_| {}));
    let spool = env.data_dir().join("spool");
    let before = files_under(&spool);
    assert!(before.iter().any(|f| f.starts_with(&first)), "{before:?}");
    let refusals: [Refusal; 3] = [
        ("country", |m| m["ocr_data"]["id_document_country"] = json!("XX"), "ocr_data.id_document_country"),
        ("image", |m| m["images"]["document_front"] = json!("nope.jpg"), "images.document_front"),
        ("claims", |m| m["similarity_level"] = json!(120), "similarity_level"),
    ];
    for (name, edit, field) in refusals {
        let manifest = env.manifest(name, name, edit);
        let out = env.cmd().arg("enroll").arg(&manifest).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 2, &format!("stderr: {stderr}"));
        assert!(stderr.contains(field), "{stderr}");
        assert_eq!(files_under(&spool), before, "the refused {name} enrollment left something in the spool");
    }
    assert_eq!(env.list().len(), 1);
    // And the next good one is queued whole, its video sealed early.
    let second = env.enroll(&env.manifest("good", "good", |_| {}));
    assert!(files_under(&spool).iter().any(|f| f == &format!("{second}/video.enc")));
}
