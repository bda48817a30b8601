//! Secrets, permissions and process hardening.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::util::*;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_config_checks_the_key_and_the_data_directory() {
    let env = Env::new(free_port());
    let out = env.run(&["check-config"]);
    assert_exit(&out, 0, "");

    let key = env.data_dir().join("master.key");
    std::fs::write(&key, "0123456789abcdef").unwrap();
    let out = env.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 2, "a 16-byte key is refused");
    assert!(text.contains("storage.master_key_file") && text.contains("32 bytes"), "{text}");

    // A data directory that is a file.
    let env = Env::with_config(free_port(), "current", "");
    let moved = env.dir.path().join("moved");
    std::fs::rename(env.data_dir(), &moved).unwrap();
    std::fs::write(env.data_dir(), "a file").unwrap();
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[storage]\n", "[storage]\nmaster_key_file = \"moved/master.key\"\n"),
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 2, "");
    assert!(text.contains("storage.data_dir") && text.contains("not a directory"), "{text}");
}

#[test]
fn secrets_readable_by_others_or_owned_by_another_user_are_refused() {
    let env = Env::new(free_port());
    let key = env.data_dir().join("master.key");
    chmod(&key, 0o644);
    for args in [&["queue", "list"][..], &["check-config"]] {
        let out = env.run(args);
        let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert_exit(&out, 2, &format!("{args:?}: {all}"));
        assert!(all.contains("master.key") && all.contains("chmod 600"), "{args:?}: {all}");
    }
    chmod(&key, 0o600);
    assert_exit(&env.run(&["queue", "list"]), 0, "");

    // The billing password file, named by the configuration.
    let pw = env.dir.path().join("billing.pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    chmod(&pw, 0o640);
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[oneshot]\n",
        "[oneshot]\nbilling_username = \"b@example.com\"\nbilling_password_file = \"billing.pw\"\n",
    );
    std::fs::write(&env.config, text).unwrap();
    let out = env.run(&["check-config"]);
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert_exit(&out, 2, &all);
    assert!(all.contains("oneshot.billing_password_file") && all.contains("chmod 600"), "{all}");
    chmod(&pw, 0o600);
    assert_exit(&env.run(&["check-config"]), 0, "");
    // A key owned by another user: tests/privileged/ownership.rs (needs root to chown).
}

/// Every file the agent writes is 0600 and every directory 0700, even under umask 000.
#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    let env = Env::new(free_port());
    std::fs::remove_dir_all(env.data_dir()).unwrap();
    let with_umask = |args: &[&str]| {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "umask 000; exec \"$@\"", "sh", BIN, "--config"]).arg(&env.config).args(args);
        cmd.env_remove("CREDENTIALS_DIRECTORY").output().unwrap()
    };
    assert_exit(&with_umask(&["key", "init"]), 0, "");
    let out = with_umask(&["enroll", env.manifest("m", "", |_| {}).to_str().unwrap()]);
    assert_exit(&out, 0, "");
    let mut seen = 0;
    let mut stack = vec![env.data_dir()];
    while let Some(dir) = stack.pop() {
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                seen += 1;
                assert_eq!(meta.mode() & 0o777, 0o600, "{}", entry.path().display());
            }
        }
    }
    assert!(seen >= 7, "the key, the database and the spool files were checked ({seen})");
}

#[test]
fn the_daemon_never_dumps_core() {
    let env = Env::new(free_port());
    let mut child = env.cmd().arg("run").stdout(Stdio::null()).stderr(Stdio::null()).spawn_guarded();
    // Once the wake socket exists the daemon is past start-up.
    wait_for(Duration::from_secs(10), || env.data_dir().join("wake.sock").exists().then_some(()));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

#[test]
fn the_audit_trail_names_who_did_what_and_verify_finds_tampering() {
    let env = Env::new(free_port());
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    let out = env.run(&["queue", "purge", &id, "--force"]);
    assert_exit(&out, 0, "");
    let out = env.run(&["audit", "export"]);
    assert_exit(&out, 0, "");
    let records: Vec<serde_json::Value> =
        String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let uid = std::fs::metadata(env.data_dir()).unwrap().uid();
    let find =
        |kind: &str| records.iter().find(|r| r["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {records:?}"));
    assert_eq!((&find("queued")["command"], &find("queued")["uid"]), (&"enroll".into(), &uid.into()));
    assert_eq!(find("purged (forced)")["command"], "queue purge");
    assert_eq!(find("purged (forced)")["enrollment"], id.as_str());
    let out = env.run(&["audit", "verify"]);
    assert_exit(&out, 0, "audit verify");
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain intact"), "{}", String::from_utf8_lossy(&out.stdout));
    // An anchor kept elsewhere (an upload carries one): it holds now; a malformed one is refused.
    let anchor = format!("1:{}", records[0]["hash"].as_str().unwrap());
    let out = env.run(&["audit", "verify", "--anchor", &anchor]);
    assert_exit(&out, 0, "");
    let out = env.run(&["audit", "verify", "--anchor", "1:abc"]);
    assert_exit(&out, 2, "");
    assert!(stderr(&out).contains("--anchor"), "{}", stderr(&out));
    let other = format!("1:{}", "0".repeat(64));
    let out = env.run(&["audit", "verify", "--anchor", &other]);
    assert_exit(&out, 4, "");
    assert!(stderr(&out).contains("differs from the anchor"), "{}", stderr(&out));

    let conn = rusqlite::Connection::open(env.data_dir().join("queue.db")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET uid = 4242 WHERE seq = 1;").unwrap();
    drop(conn);
    let out = env.run(&["audit", "verify"]);
    assert_exit(&out, 4, "");
    assert!(stderr(&out).contains("broken at record 1"), "{}", stderr(&out));
}

#[test]
fn evidence_past_the_retention_period_is_erased_even_offline() {
    let env = Env::with_config(free_port(), "current", "");
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    let conn = rusqlite::Connection::open(env.data_dir().join("queue.db")).unwrap();
    // It has waited 31 days (as the clocks measured it: see `queue::clock`).
    conn.execute("UPDATE enrollments SET waited_ms = 31 * 86400000", []).unwrap();
    drop(conn);
    // Nothing listens on the configured port: the server is unreachable.
    let out = env.run(&["sync", "--once"]);
    assert!(stderr(&out).contains("WARN") && stderr(&out).contains("retention"), "{}", stderr(&out));
    let shown = env.show(&id);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert_eq!(shown["erased"], true);
    assert!(!env.data_dir().join("spool").join(&id).exists());
    let out = env.run(&["audit", "export"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retention_erased"));
}
