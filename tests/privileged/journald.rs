//! `log.format = "journald"` against a real journald (needs root, unshare(1), systemd-journald).

use crate::util::*;

/// What the test needs: root (a mount namespace), unshare(1), systemd-journald, journalctl and
/// /etc/machine-id.
pub fn can_run() -> Result<(), String> {
    let journald = ["/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"]
        .into_iter()
        .any(|p| std::path::Path::new(p).exists());
    if is_root()
        && have("unshare")
        && have("journalctl")
        && journald
        && std::path::Path::new("/etc/machine-id").exists()
    {
        Ok(())
    } else {
        Err("needs root, unshare(1), systemd-journald, journalctl and /etc/machine-id".into())
    }
}

/// `log.format = "journald"`: events reach a real journald (systemd's own, started for the test
/// in a mount namespace with a fresh `/run`, keeping its journal in memory there) with
/// `ENROLLMENT_ID` and `STATE` as journal fields, as `journalctl -o json` reads them back.
pub fn journald_gets_the_enrollment_and_state_as_fields() {
    let journald = ["/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let machine_id = std::path::Path::new("/etc/machine-id");
    let journald = journald.expect("checked by can_run");
    assert!(machine_id.exists(), "checked by can_run");
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "current", "[log]\nformat = \"journald\"\n");
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    let work = tempfile::tempdir().unwrap();
    // In memory, nothing read from or sent to the host's kernel log, console or syslog.
    let conf = work.path().join("journald.conf");
    std::fs::write(
        &conf,
        "[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToKMsg=no\n\
         ForwardToConsole=no\nForwardToWall=no\nAudit=no\n",
    )
    .unwrap();
    let fresh_id = work.path().join("machine-id");
    std::fs::write(&fresh_id, format!("{}\n", uuid::Uuid::new_v4().simple())).unwrap();
    let exported = work.path().join("journal.json");
    let script = r#"
        set -e
        conf=$1 fresh_id=$2 exported=$3 journald=$4; shift 4
        mount -t tmpfs tmpfs /run
        mount --bind "$conf" /etc/systemd/journald.conf 2>/dev/null || {
            mkdir -p /run/etc-systemd && cp "$conf" /run/etc-systemd/journald.conf
            mount --bind /run/etc-systemd /etc/systemd
        }
        [ -s /etc/machine-id ] || mount --bind "$fresh_id" /etc/machine-id
        "$journald" &
        jd=$!
        trap 'kill $jd' EXIT
        for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
        "$@"
        journalctl --sync 2>/dev/null || sleep 1
        journalctl -D /run/log/journal -o json --no-pager -t kiosk-agent >"$exported"
    "#;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", script, "sh"])
        .args([&conf, &fresh_id, &exported])
        .arg(journald)
        .arg(crate::util::BIN)
        .arg("--config")
        .arg(&env.config)
        .args(["sync", "--once"])
        .env("KIOSK_AGENT_LOG", "info")
        .env_remove("KIOSK_AGENT_LOG_FORMAT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 0, &stderr);
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!entries.is_empty(), "events went to the journal, not stderr: {stderr}");
    let change = entries
        .iter()
        .find(|e| e["STATE"] == "in_review")
        .unwrap_or_else(|| panic!("a state change with STATE=in_review: {entries:#?}"));
    assert_eq!(change["ENROLLMENT_ID"].as_str(), Some(id.as_str()), "{change}");
    assert_eq!(change["PRIORITY"], "5", "info is notice: {change}");
    assert!(change["MESSAGE"].as_str().is_some_and(|m| !m.is_empty()), "{change}");
    // The journal itself says who wrote it: this agent's process, not a relay.
    assert_eq!(change["_TRANSPORT"], "journal", "{change}");
}
