//! The capture helper, `kiosk-agent-capture`, installed beside `kiosk-agent`.
//!
//! Everything that touches cameras and FFmpeg runs in that separate process: the daemon and the
//! queue commands neither link nor load FFmpeg and V4L2 (they start in a few milliseconds and
//! stay small), and a crashing camera driver or decoder cannot take the queue down with it.
//! `kiosk-agent cameras|capture …` run the helper with the same arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};

/// File name of the helper binary.
pub const HELPER: &str = "kiosk-agent-capture";

/// Where the helper is: beside this executable.
pub fn path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating kiosk-agent")?;
    let helper = exe.with_file_name(HELPER);
    // The library's own unit tests run from target/…/deps, one level below the binaries.
    #[cfg(test)]
    let helper = match exe.parent().and_then(|deps| deps.parent()) {
        Some(up) if !helper.is_file() => up.join(HELPER),
        _ => helper,
    };
    if helper.is_file() {
        Ok(helper)
    } else {
        Err(anyhow!("{} not found: install it beside {} (see the README)", helper.display(), exe.display()))
    }
}

/// A command running the helper.
pub fn command() -> anyhow::Result<std::process::Command> {
    Ok(std::process::Command::new(path()?))
}

/// Runs the helper with this process's own arguments and returns its exit code.
pub fn exec() -> anyhow::Result<ExitCode> {
    let status = command()?.args(std::env::args_os().skip(1)).status().context("running the capture helper")?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
