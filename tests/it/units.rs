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
