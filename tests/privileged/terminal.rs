//! Progress at a terminal: a bar redrawn in place (needs script(1) for a pseudo-terminal).

use std::process::Command;

use crate::util::*;

pub fn can_run() -> Result<(), String> {
    if have("script") {
        Ok(())
    } else {
        Err("needs script(1) for a pseudo-terminal".into())
    }
}

/// Runs `args` of `env` under a pseudo-terminal (`script` from util-linux), returning what the
/// terminal showed, or `None` when `script` is missing.
fn at_a_terminal(env: &Env, args: &[&str]) -> Option<String> {
    if !have("script") {
        return None;
    }
    let mut line = format!("{} --config {}", BIN, env.config.display());
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script").args(["-qefc", &line, "/dev/null"]).current_dir(env.dir.path()).output().unwrap();
    assert_exit(&out, 0, &format!("{line}: {}", String::from_utf8_lossy(&out.stdout)));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Capture and enroll show a bar, redrawn in place, and no plain lines at a terminal.
pub fn progress_is_a_bar_at_a_terminal() {
    let env = Env::new(free_port());
    let screen = at_a_terminal(
        &env,
        &["capture", "video", "--camera", "synthetic:320x240@30", "--seconds", "2", "--out", "clip2.mp4"],
    )
    .expect("checked by can_run");
    assert!(screen.contains("capture video: recording [") && screen.contains("\u{1b}[2K"), "{screen:?}");
    assert!(!screen.contains("recording: "), "no plain lines at a terminal: {screen:?}");
    let manifest = env.manifest("n", "other", |_| {});
    let screen = at_a_terminal(&env, &["enroll", manifest.to_str().unwrap()]).unwrap();
    assert!(screen.contains("enroll: encrypting ["), "{screen:?}");
}
