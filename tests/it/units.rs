//! The systemd units: least privilege each, measured by `systemd-analyze security` (installed by
//! `scripts/setup-debian test`).

use std::path::Path;
use std::process::Command;

fn unit(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd").join(name)
}

/// The overall exposure `systemd-analyze security --offline=true` reports for `path`.
fn exposure(path: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(path)
        .output()
        .expect("systemd-analyze runs (scripts/setup-debian test installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| {
        panic!("no exposure for {}: {text}{}", path.display(), String::from_utf8_lossy(&out.stderr))
    });
    let after = line.split(':').nth(1).unwrap_or_default();
    after.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unreadable: {line}"))
}

fn settings(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn each_unit_has_an_exposure_of_at_most_one() {
    for name in ["kiosk-agent.service", "kiosk-agent-capture-service.service"] {
        let e = exposure(&unit(name));
        println!("{name}: exposure {e}");
        assert!(e <= 1.0, "{name}: exposure {e} > 1.0");
    }
}

#[test]
fn the_daemon_has_no_devices_and_the_camera_unit_no_network() {
    let daemon = settings(&unit("kiosk-agent.service"));
    for wanted in [
        "PrivateDevices=yes",
        "PrivateUsers=yes",
        "ProcSubset=pid",
        "RemoveIPC=yes",
        "LimitCORE=0",
        "IPAddressDeny=any",
    ] {
        assert!(daemon.iter().any(|l| l == wanted), "daemon unit lacks {wanted}");
    }
    assert!(daemon.iter().any(|l| l.starts_with("MemoryMax=")));
    for unwanted in ["SupplementaryGroups", "DeviceAllow"] {
        assert!(!daemon.iter().any(|l| l.starts_with(unwanted)), "daemon unit has {unwanted}");
    }
    let camera = settings(&unit("kiosk-agent-capture-service.service"));
    for wanted in ["PrivateNetwork=yes", "DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "LimitCORE=0"] {
        assert!(camera.iter().any(|l| l == wanted), "camera unit lacks {wanted}");
    }
    assert!(!camera.iter().any(|l| l.starts_with("LoadCredential")), "the camera unit holds no key");
}

/// The capture service decodes what USB devices send: it runs as a user of its own and sees
/// neither the daemon's state (queue, device key, API token) nor the master key or any secret
/// beside the configuration; the daemon alone gets the key, as a credential.
#[test]
fn the_capture_service_runs_apart_from_the_keys() {
    let camera = settings(&unit("kiosk-agent-capture-service.service"));
    let daemon = settings(&unit("kiosk-agent.service"));
    let value = |lines: &[String], key: &str| {
        lines.iter().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).unwrap_or_default()
    };
    assert_eq!(value(&daemon, "User"), "kiosk-agent");
    assert_eq!(value(&camera, "User"), "kiosk-agent-capture", "its own user");
    assert!(!camera.iter().any(|l| l.starts_with("StateDirectory")), "not the daemon's state directory");
    assert!(value(&camera, "InaccessiblePaths").split_whitespace().any(|p| p == "-/var/lib/kiosk-agent"));
    assert_eq!(value(&camera, "TemporaryFileSystem"), "/etc/kiosk-agent:ro", "/etc/kiosk-agent hidden");
    assert_eq!(value(&camera, "BindReadOnlyPaths"), "/etc/kiosk-agent/kiosk-agent.toml", "but the configuration");
    assert!(value(&camera, "ExecStart").contains("--socket /run/kiosk-agent-capture/capture.sock"));
    assert_eq!(value(&camera, "RuntimeDirectory"), "kiosk-agent-capture");
    assert_eq!(value(&daemon, "LoadCredential"), "kiosk-agent.key:/etc/kiosk-agent/master.key");
    // The shipped configuration points the daemon at that socket.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kiosk-agent.example.toml")).unwrap();
    assert!(example.contains("capture_socket = \"/run/kiosk-agent-capture/capture.sock\""));
}

/// `Type=notify`: READY=1, STATUS=, WATCHDOG=1 while the worker runs, STOPPING=1 on SIGTERM,
/// read from a notification socket of the test's own.
#[test]
fn the_daemon_speaks_systemds_notification_protocol() {
    use crate::util::*;
    let env = Env::new(free_port());
    let socket_path = env.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut daemon = env
        .cmd()
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1500000")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("daemon.log")).unwrap())
        .spawn_guarded();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while !(seen.iter().any(|m| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("STATUS="))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let status = seen.iter().find(|m| m.contains("STATUS=")).unwrap();
    assert!(status.contains("0 pending") && (status.contains("online") || status.contains("offline")), "{status}");
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM; seen {seen:?}");
    let status = daemon.wait().unwrap();
    let log = std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
}

/// The shipped Grafana dashboard and Prometheus alerts load, the alerts pass their own rule
/// tests, and every metric they use is one a running daemon exports.
#[test]
fn the_dashboard_and_alerts_load_and_use_real_metrics() {
    use crate::util::*;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let prom = config.join("prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
        vec!["check", "config", "--syntax-only", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&prom)
            .output()
            .expect("promtool runs (scripts/setup-debian test installs prometheus)");
        assert_exit(
            &out,
            0,
            &format!(
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("grafana/kiosk-agent-fleet.json")).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let alerts = std::fs::read_to_string(prom.join("alerts.yml")).unwrap();

    // The metrics a daemon really exports.
    let env = Env::new(free_port());
    // The API on port 0 (the configuration's own): the daemon's log says which port it got.
    let (mut daemon, addr) = spawn_daemon(&env);
    let port = addr.port();
    let (_, _) = wait_for(std::time::Duration::from_secs(20), || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.ok().map(|r| (r.status(), ()))
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The API token `key init` made (a scraper reads it from a file the same way).
    let token = std::fs::read_to_string(env.data_dir().join("api.token")).unwrap();
    let metrics = rt.block_on(async {
        let request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).bearer_auth(token.trim());
        request.send().await.unwrap().text().await.unwrap()
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let used = exprs.iter().map(String::as_str).chain([alerts.as_str()]).flat_map(|text| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("kiosk_agent_"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    for name in used {
        assert!(metrics.lines().any(|l| l.starts_with(&name)), "{name} is used but not exported:\n{metrics}");
    }
}
