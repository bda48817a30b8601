//! A disk that fills up during `enroll` (needs root, to mount a small tmpfs).

use crate::util::*;

pub fn can_run() -> Result<(), String> {
    if is_root() {
        Ok(())
    } else {
        Err("mounting a small tmpfs needs root".into())
    }
}

/// A disk that fills up during `enroll`: exit 2 saying there is no space, nothing queued, nothing
/// half-written left. Needs a small file system of its own (tmpfs, mounted as root).
pub fn a_full_disk_during_enroll_is_exit_2_and_leaves_nothing() {
    let env = Env::new(free_port());
    let data = env.data_dir();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k,mode=0700", "tmpfs"])
        .arg(&data)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting a small tmpfs (checked by can_run: root)");
    let unmount = || {
        let _ = std::process::Command::new("umount").arg(&data).status();
    };
    // The keys and the database fit; the evidence does not.
    let out = env.run(&["key", "init"]);
    let enroll = env.cmd().arg("enroll").arg(env.manifest("m", "", |_| {})).output().unwrap();
    let spool: Vec<_> = std::fs::read_dir(data.join("spool")).map(|r| r.flatten().collect()).unwrap_or_default();
    unmount();
    assert_exit(&out, 0, "");
    let err = String::from_utf8_lossy(&enroll.stderr);
    assert_exit(&enroll, 2, &err);
    assert!(err.contains("no space left"), "{err}");
    assert!(enroll.stdout.is_empty());
    assert!(spool.is_empty(), "nothing half-written is left: {spool:?}");
}

/// A disk that fills up during `sync`, wherever the space runs out (from none left to some
/// pages): every request the server created is recorded in the queue (never a request nothing
/// knows of), no second request is created (a create waits for room to record its answer), a
/// batch run that cannot write says "no space left" (exit 2) or leaves the enrollment pending
/// (exit 3), and once space is back the enrollment is delivered.
pub fn a_full_disk_during_sync_never_leaves_an_unrecorded_request() {
    let mut summary = Vec::new();
    for spare_kib in [0u64, 4, 8, 12, 16, 24, 32, 48, 64, 96] {
        let sandbox = Sandbox::start(0);
        let env = Env::new(sandbox.addr.port());
        let data = env.data_dir();
        std::fs::create_dir_all(&data).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a small tmpfs (checked by can_run: root)");
        struct Unmount<'a>(&'a std::path::Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(&data);
        assert_exit(&env.run(&["key", "init"]), 0, "key init");
        let id = env.enroll(&env.manifest("m", "", |_| {}));
        // Fill the file system, then give back `spare_kib`.
        let filler = data.join("filler");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&filler).unwrap();
            let block = vec![0x5a; 4096];
            while f.write_all(&block).is_ok() {}
            let _ = f.flush();
            let len = f.metadata().unwrap().len();
            f.set_len(len.saturating_sub(spare_kib * 1024)).unwrap();
        }
        let full = env.run(&["sync", "--once"]);
        std::fs::remove_file(&filler).unwrap();
        let again = env.run(&["sync", "--once"]);
        let shown = env.show(&id);
        let records = sandbox.records();
        let created: Vec<String> = records["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_pk"].as_u64().unwrap().to_string())
            .collect();
        let ours = shown["request_pk"].as_u64().map(|n| n.to_string());
        let possible_orphan = shown["history"].as_array().unwrap().iter().any(|e| e["kind"] == "possible_orphan");
        for pk in &created {
            assert!(
                Some(pk) == ours.as_ref() || possible_orphan,
                "{spare_kib} KiB spare: request {pk} is recorded nowhere: {shown}\nfirst sync: {}\nsecond: {}",
                String::from_utf8_lossy(&full.stderr),
                String::from_utf8_lossy(&again.stderr)
            );
        }
        assert_eq!(shown["state"], "in_review", "{spare_kib} KiB spare: delivered once space is back: {shown}");
        // No create is sent without room to record its answer: never a second request.
        assert_eq!(created.len(), 1, "{spare_kib} KiB spare: requests {created:?}: {shown}");
        if full.status.code() != Some(3) {
            let said = String::from_utf8_lossy(&full.stderr);
            assert!(full.status.code() == Some(2) && said.contains("no space left"), "{spare_kib} KiB spare: {said}");
        }
        summary.push(format!(
            "{spare_kib} KiB: exit {:?}, {} request(s){}",
            full.status.code(),
            created.len(),
            if possible_orphan { ", possible orphan recorded" } else { "" }
        ));
    }
    println!("a full disk during sync: {}", summary.join("; "));
}
