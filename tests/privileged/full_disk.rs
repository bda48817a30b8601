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
