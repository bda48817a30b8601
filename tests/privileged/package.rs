//! The Debian package (`scripts/package`, dpkg-deb): what it holds, read back with `dpkg-deb`,
//! and what installing it does, in a throwaway root: an overlay of this very system in a mount
//! namespace of the test's own, so `dpkg -i`, the postinst (user, state directory, key) and
//! `kiosk-agent doctor` run for real and nothing of it reaches the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What packaging needs: the release binaries (the README's test command builds them) and
/// Debian's dpkg-deb and dpkg-shlibdeps (dpkg-dev), which `scripts/package` runs.
pub fn can_package() -> Result<(), String> {
    let release = Path::new(ROOT).join("target/release");
    if !have("dpkg-deb") || !have("dpkg-shlibdeps") {
        return Err("packaging needs dpkg-deb and dpkg-shlibdeps (Debian's dpkg-dev)".into());
    }
    if release.join("kiosk-agent").exists() && release.join("kiosk-agent-capture").exists() {
        Ok(())
    } else {
        Err("no release build to package (scripts/package builds one; the README's test command runs it)".into())
    }
}

/// What installing into a throwaway root needs besides the package: root, unshare(1), dpkg,
/// and a kernel that mounts an overlay of `/` in a mount namespace.
pub fn can_install() -> Result<(), String> {
    can_package()?;
    if !is_root() || !have("unshare") || !have("dpkg") {
        return Err("installing into a throwaway root needs root, unshare(1) and dpkg".into());
    }
    // The mounts live and die with the namespace; the directory is removed outside it.
    let probe = r#"set -e
w=$1
mount -t tmpfs tmpfs "$w" && mkdir "$w/u" "$w/w" "$w/r"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/u,workdir=$w/w" "$w/r""#;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", probe, "sh"])
        .arg(dir.path())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("this kernel cannot mount an overlay here: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Packages the release binaries into a directory of this test run (once).
fn package() -> Option<&'static Path> {
    static DEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    DEB.get_or_init(|| {
        can_package().ok()?;
        let out_dir = Path::new(ROOT).join("target/package-test");
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = Command::new(Path::new(ROOT).join("scripts/package"))
            .args(["--no-build", "--fast", "-o"])
            .arg(&out_dir)
            .output()
            .unwrap();
        assert_exit(&out, 0, &format!("scripts/package: {}", String::from_utf8_lossy(&out.stderr)));
        let deb = std::fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"));
        Some(deb.expect("scripts/package wrote a .deb"))
    })
    .as_deref()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb").args(args).arg(deb).output().expect("dpkg-deb runs");
    assert_exit(&out, 0, &format!("dpkg-deb {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    String::from_utf8(out.stdout).unwrap()
}

pub fn the_package_holds_what_a_kiosk_needs() {
    let deb = package().expect("checked by can_package");
    let info = dpkg_deb(&["--info"], deb);
    for field in ["Package: kiosk-agent", "Architecture: amd64", "adduser", "libavcodec", "libc6", "libsqlite3-0"] {
        assert!(info.contains(field), "{field} in:\n{info}");
    }
    for placeholder in ["@VERSION@", "@ARCH@", "@SIZE@", "@SHLIBS@"] {
        assert!(!info.contains(placeholder), "{placeholder} left in packaging/debian/control's copy:\n{info}");
    }
    let files: Vec<String> = dpkg_deb(&["--contents"], deb)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(|p| p.trim_start_matches('.').to_owned()))
        .collect();
    for wanted in [
        "/usr/bin/kiosk-agent",
        "/usr/bin/kiosk-agent-capture",
        "/lib/systemd/system/kiosk-agent.service",
        "/lib/systemd/system/kiosk-agent-capture-service.service",
        "/etc/systemd/system/kiosk-agent.service.d/10-oneshot-server.conf",
        "/etc/kiosk-agent/kiosk-agent.toml",
        "/usr/share/doc/kiosk-agent/README.md",
        "/usr/share/doc/kiosk-agent/copyright",
        "/usr/share/doc/kiosk-agent/monitoring/prometheus/alerts.yml",
        "/usr/share/doc/kiosk-agent/monitoring/grafana/kiosk-agent-fleet.json",
    ] {
        assert!(files.iter().any(|f| f == wanted), "{wanted} in {files:#?}");
    }
    // What the units name is in the package: the binaries they run and their documentation.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb").arg("-R").arg(deb).arg(dir.path()).status().unwrap();
    assert!(out.success());
    for unit in ["kiosk-agent.service", "kiosk-agent-capture-service.service"] {
        let text = std::fs::read_to_string(dir.path().join("lib/systemd/system").join(unit)).unwrap();
        for line in text.lines().filter(|l| l.starts_with("ExecStart") || l.starts_with("Documentation=")) {
            let target =
                line.split_once('=').unwrap().1.split_whitespace().next().unwrap().trim_start_matches("file://");
            assert!(dir.path().join(target.trim_start_matches('/')).exists(), "{unit}: {line} is not in the package");
        }
    }
    let conffiles = std::fs::read_to_string(dir.path().join("DEBIAN/conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/kiosk-agent/kiosk-agent.toml"),
        "an edited configuration survives upgrades: {conffiles}"
    );
    // Every file but the conffiles has its checksum, and each matches (`dpkg --verify` reads them).
    let md5sums = std::fs::read_to_string(dir.path().join("DEBIAN/md5sums")).unwrap();
    assert!(md5sums.contains("  usr/bin/kiosk-agent\n") && !md5sums.contains("etc/kiosk-agent"), "{md5sums}");
    let out =
        Command::new("md5sum").args(["--check", "--quiet", "DEBIAN/md5sums"]).current_dir(dir.path()).output().unwrap();
    assert_exit(&out, 0, "the package's checksums match its files");
    let copyright = std::fs::read_to_string(dir.path().join("usr/share/doc/kiosk-agent/copyright")).unwrap();
    assert!(copyright.contains("License: Apache-2.0"), "{copyright}");
    let postinst = std::fs::read_to_string(dir.path().join("DEBIAN/postinst")).unwrap();
    assert!(postinst.contains("key init") && postinst.contains("[ ! -e \"$key\" ]"), "the key only when none exists");
    // Stripped: a kiosk downloads megabytes, not the debug information.
    let size = std::fs::metadata(dir.path().join("usr/bin/kiosk-agent")).unwrap().len();
    assert!(size < 40 << 20, "kiosk-agent is {size} bytes");
}

/// Installs the package into an overlay of this system (root, in a mount namespace) and runs
/// `kiosk-agent doctor` from it as the daemon's user, against the sandbox on loopback; then
/// installs it again to show that the key is kept.
pub fn the_package_installs_and_its_doctor_passes() {
    let deb = package().expect("checked by can_install");
    let sandbox = Sandbox::start(0);
    let work = tempfile::tempdir().unwrap();
    let status_before = std::fs::read("/var/lib/dpkg/status").unwrap();
    let base_url = format!("http://127.0.0.1:{}/oneshot/api/v1", sandbox.addr.port());
    let inside = format!(
        r##"set -e
dpkg -i /root/kiosk-agent.deb
key=$(sha256sum /etc/kiosk-agent/master.key)
sed -i -e 's#^base_url = .*#base_url = "{base_url}"#' -e 's#^source = "camera:0"#source = "synthetic"#' /etc/kiosk-agent/kiosk-agent.toml
echo "== stat"; stat -c '%n %U %G %a' /etc/kiosk-agent /etc/kiosk-agent/kiosk-agent.toml /etc/kiosk-agent/master.key /var/lib/kiosk-agent /var/lib/kiosk-agent/device.key /var/lib/kiosk-agent/api.token
# The daemon's view, as systemd gives it: the key as a credential (LoadCredential= makes a copy
# owned by the service's user), the capture socket in the capture service's runtime directory.
creds=$(mktemp -d); install -o kiosk-agent -g kiosk-agent -m 0600 /etc/kiosk-agent/master.key "$creds/kiosk-agent.key"
chown kiosk-agent "$creds"; chmod 0700 "$creds"
echo "== doctor"
CREDENTIALS_DIRECTORY=$creds KIOSK_AGENT_LOG_FORMAT=text runuser -u kiosk-agent -- kiosk-agent --config /etc/kiosk-agent/kiosk-agent.toml doctor && echo "doctor exit 0" || echo "doctor exit $?"
# The capture service as its unit runs it: its User=, Group= and SupplementaryGroups=, read from
# the installed unit. It must not open the master key, the queue's directory, the device key or
# the API token; it reads the configuration and serves its socket, which the daemon's user
# reaches and another user does not.
unit=/lib/systemd/system/kiosk-agent-capture-service.service
u=$(sed -n 's/^User=//p' $unit); g=$(sed -n 's/^Group=//p' $unit); sg=$(sed -n 's/^SupplementaryGroups=//p' $unit)
as_capture() {{ setpriv --reuid="$u" --regid="$g" --groups="$(getent group $sg | cut -d: -f3)" --inh-caps=-all "$@"; }}
echo "== capture user $u $g"
for f in /etc/kiosk-agent/master.key /var/lib/kiosk-agent/device.key /var/lib/kiosk-agent/api.token /var/lib/kiosk-agent/; do
  if [ -d "$f" ]; then open=ls; else open=cat; fi
  if as_capture $open "$f" >/dev/null 2>&1; then echo "opened $f"; else echo "refused $f"; fi
done
as_capture cat /etc/kiosk-agent/kiosk-agent.toml >/dev/null && echo "read the configuration"
install -d -o "$u" -g "$g" -m 0750 /run/kiosk-agent-capture
(umask 0007; as_capture $(sed -n 's/^ExecStart=//p' $unit) & echo $! > /run/capture.pid)
for i in $(seq 100); do [ -S /run/kiosk-agent-capture/capture.sock ] && break; sleep 0.1; done
stat -c 'socket %U %G %a' /run/kiosk-agent-capture/capture.sock
ask='import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect("/run/kiosk-agent-capture/capture.sock"); s.sendall(b"GET /health HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n"); print(s.recv(100).split(b"\r\n")[0].decode())'
for who in kiosk-agent nobody; do
  if out=$(runuser -u $who -- python3 -c "$ask" 2>/dev/null); then echo "$who: $out"; else echo "$who: refused"; fi
done
kill $(cat /run/capture.pid)
dpkg -i /root/kiosk-agent.deb >/dev/null
[ "$(sha256sum /etc/kiosk-agent/master.key)" = "$key" ] && echo "== key kept"
"##
    );
    // Inside the namespace: a tmpfs for the overlay's upper layer (so it is not part of the
    // lower one), the host's / as the lower layer, /proc and /dev bound in; then chroot.
    let outside = r#"set -e
w=$1 deb=$2
mount -t tmpfs tmpfs "$w" && mkdir "$w/upper" "$w/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
mount --bind /proc "$w/root/proc" && mount --bind /dev "$w/root/dev"
cp "$deb" "$w/root/root/kiosk-agent.deb"
exec chroot "$w/root" sh -c "$3"
"#;
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", outside, "sh"])
        .arg(work.path())
        .arg(deb)
        .arg(&inside)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_exit(&out, 0, &format!("{stdout}\n{stderr}"));
    let stat: Vec<&str> =
        stdout.lines().skip_while(|l| *l != "== stat").skip(1).take_while(|l| !l.starts_with("==")).collect();
    assert_eq!(
        stat,
        [
            "/etc/kiosk-agent root kiosk-agent 750",
            "/etc/kiosk-agent/kiosk-agent.toml root kiosk-agent 640",
            "/etc/kiosk-agent/master.key root root 600",
            "/var/lib/kiosk-agent kiosk-agent kiosk-agent 700",
            "/var/lib/kiosk-agent/device.key kiosk-agent kiosk-agent 600",
            "/var/lib/kiosk-agent/api.token kiosk-agent kiosk-agent 600",
        ],
        "{stdout}"
    );
    // The capture service's user, with its unit's settings, holds nothing worth stealing.
    assert!(stdout.contains("== capture user kiosk-agent-capture kiosk-agent"), "{stdout}\n{stderr}");
    for f in [
        "/etc/kiosk-agent/master.key",
        "/var/lib/kiosk-agent/device.key",
        "/var/lib/kiosk-agent/api.token",
        "/var/lib/kiosk-agent/",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("refused {f}")),
            "the capture user opened {f}:\n{stdout}\n{stderr}"
        );
    }
    assert!(stdout.contains("read the configuration"), "{stdout}\n{stderr}");
    assert!(stdout.contains("socket kiosk-agent-capture kiosk-agent 660"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("kiosk-agent: HTTP/1.1 200"),
        "the daemon reaches the capture service:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("nobody: refused") && !stdout.contains("nobody: HTTP"), "{stdout}\n{stderr}");
    assert!(stdout.contains("doctor exit 0"), "{stdout}\n{stderr}");
    for what in ["master key", "device key", "data directory", "server", "clock", "camera document"] {
        assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains(what)), "ok {what}:\n{stdout}");
    }
    assert!(stdout.contains("== key kept"), "reinstalling keeps the key:\n{stdout}\n{stderr}");
    assert_eq!(std::fs::read("/var/lib/dpkg/status").unwrap(), status_before, "nothing was installed on the host");
}
