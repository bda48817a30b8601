//! `kiosk-agent-capture`: the capture helper behind `kiosk-agent cameras|capture …`, the
//! demo's capture step and the capture service. It is the only binary that links the capture
//! crate (FFmpeg, V4L2); see `kiosk_agent::helper` for why it is a separate process. It parses
//! only its own commands ([`HelperCommand`]), with the same words as `kiosk-agent`.

mod commands;
mod convert;
mod demo_evidence;
mod report;
mod service;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kiosk_agent::cli::capture_args::HelperCommand;
use kiosk_agent::cli::{capture_config, init_logging, Failure};
use kiosk_agent::config::CONFIG_ENV;

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

fn run(cli: HelperCli) -> Result<ExitCode, Failure> {
    match cli.command {
        HelperCommand::Cameras => {
            let (cfg, from) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            commands::cameras(&cfg, &from)
        }
        HelperCommand::Capture { command } => {
            let (cfg, _) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            commands::run(&cfg, command)
        }
        HelperCommand::DemoEvidence { dir, camera, seconds } => {
            demo_evidence::run(&dir, camera.as_deref(), Duration::from_secs_f64(seconds), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        HelperCommand::ProbeVideo => commands::probe_video(),
        HelperCommand::CaptureService { socket, keep_secs } => {
            let (cfg, _) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            service::run(cfg, &socket, Duration::from_secs(keep_secs.max(1)))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    kiosk_agent::harden::apply();
    // The helper runs for kiosk-agent (or systemd): if its parent dies, so does it, rather than
    // go on holding a camera and writing evidence nobody will collect.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let cli = HelperCli::parse();
    init_logging(false, cli.config.as_deref());
    match run(cli) {
        Ok(code) => code,
        Err(mut failure) => {
            // A missing device, an unknown source or a file that is not a video is bad input.
            let source_problem = failure
                .error
                .chain()
                .any(|c| c.downcast_ref::<kiosk_capture::CaptureError>().is_some_and(|e| e.is_bad_input()));
            if source_problem {
                failure.code = 2;
            }
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
