//! `kiosk-agent-capture`: the capture helper behind `kiosk-agent cameras|capture …`, the
//! demo's capture step and the capture service. It is the only binary that links the capture
//! crate (FFmpeg, V4L2); see `kiosk_agent::helper` for why it is a separate process. It parses
//! only its own commands ([`HelperCommand`]), with the same words as `kiosk-agent`.

mod commands;
mod demo_evidence;
mod live;
mod report;
mod service;
mod standby;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kiosk_common::capture::{load_capture, CaptureConfig};
use kiosk_common::config::{ConfigError, CONFIG_ENV};
use kiosk_common::helper_args::HelperCommand;
use kiosk_common::BadInput;

/// The helper's command line: `kiosk-agent`'s global `--config` and the camera commands.
#[derive(Debug, Parser)]
#[command(name = "kiosk-agent-capture", version, about = "kiosk-agent's capture helper (cameras, stills, clips)")]
struct HelperCli {
    /// Configuration file (TOML): only `[cameras.*]` and `[capture]` are read.
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: HelperCommand,
}

/// The capture sections of the configuration file, or the defaults without one; and where
/// they came from, for `cameras` to say.
fn capture_config(path: Option<&std::path::Path>) -> anyhow::Result<(CaptureConfig, String)> {
    match path {
        Some(p) => Ok((load_capture(p)?, p.display().to_string())),
        None => Ok((CaptureConfig::default(), "defaults; no configuration file".into())),
    }
}

fn run(cli: HelperCli) -> anyhow::Result<ExitCode> {
    match cli.command {
        HelperCommand::Cameras => {
            let (cfg, from) = capture_config(cli.config.as_deref())?;
            commands::cameras(&cfg, &from)
        }
        HelperCommand::Capture { command } => {
            let (cfg, _) = capture_config(cli.config.as_deref())?;
            commands::run(&cfg, command)
        }
        HelperCommand::DemoEvidence { dir, camera, seconds } => {
            demo_evidence::run(&dir, camera.as_deref(), Duration::from_secs_f64(seconds), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        HelperCommand::ProbeVideo => commands::probe_video(),
        HelperCommand::ProbeStandby => standby::run(),
        HelperCommand::CaptureService { socket, keep_secs } => {
            let (cfg, _) = capture_config(cli.config.as_deref())?;
            service::run(cfg, &socket, Duration::from_secs(keep_secs.max(1)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    kiosk_common::harden::apply();
    // The helper runs for kiosk-agent (or systemd): if its parent dies, so does it, rather than
    // go on holding a camera and writing evidence nobody will collect.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let cli = HelperCli::parse();
    kiosk_common::log::init(false, cli.config.as_deref());
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Exit 2 says "nothing was changed, fix the input": a bad configuration or argument,
            // a missing device, an unknown source, a file that is not a video. Anything else
            // is 1, as for `kiosk-agent`.
            let bad_input = error.chain().any(|c| {
                c.is::<ConfigError>()
                    || c.is::<BadInput>()
                    || c.downcast_ref::<kiosk_capture::CaptureError>().is_some_and(|e| e.is_bad_input())
            });
            eprintln!("error: {error:#}");
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}
