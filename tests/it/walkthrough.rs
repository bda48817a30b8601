//! The README's five-minute walkthrough, run by `scripts/walkthrough` exactly as written there:
//! if a command or its output changes, the README has to change with it.

use std::path::Path;
use std::process::Command;

use crate::util::*;

#[test]
fn the_readmes_walkthrough_runs_as_written() {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/walkthrough"));
    cmd.env("PATH", path)
        .env("SANDBOX_PORT", free_port().to_string())
        .env("API_PORT", free_port().to_string())
        .env_remove("KIOSK_AGENT_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY");
    let output = cmd.output().unwrap();
    let ran = Ran::of(&cmd, output);
    assert_exit(&ran, 0, "the README's walkthrough");
    let out = String::from_utf8_lossy(&ran.stdout);
    for needle in ["1 delivered", "state          in_review", ": VIDEOREVIEW (enrollment", "ok    server"] {
        assert!(out.contains(needle), "{needle:?} in:\n{out}");
    }
}
