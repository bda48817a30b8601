//! `kiosk-agent-capture`: the capture helper behind `kiosk-agent cameras|capture …` and the
//! demo's capture step. It is the only binary that links the capture crate (FFmpeg, V4L2); see
//! `kiosk_agent::helper` for why it is a separate process. It parses the same command line
//! as `kiosk-agent`.

mod commands;
mod convert;
mod demo_evidence;
mod service;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kiosk_agent::cli::{capture_config, init_logging, Cli, Command, Failure};

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Cameras => {
            let (cfg, from) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            commands::cameras(&cfg, &from)
        }
        Command::Capture { command } => {
            let (cfg, _) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            commands::run(&cfg, command)
        }
        Command::DemoEvidence { dir, camera, seconds } => {
            demo_evidence::run(&dir, camera.as_deref(), Duration::from_secs_f64(seconds), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ProbeVideo => commands::probe_video(),
        Command::CaptureService { socket, dir } => {
            let (cfg, _) =
                capture_config(cli.config.as_deref()).map_err(|f| Failure { code: f.code, error: f.error })?;
            service::run(cfg, &socket, &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Failure::bad_input(anyhow::anyhow!(
            "kiosk-agent-capture runs only cameras, capture and the demo's capture step; use kiosk-agent"
        ))),
    }
}

fn main() -> ExitCode {
    kiosk_agent::harden::apply();
    // The helper runs for kiosk-agent (or systemd): if its parent dies, so does it, rather than
    // go on holding a camera and writing evidence nobody will collect.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let cli = Cli::parse();
    init_logging(&cli.command, cli.config.as_deref());
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
