//! `kiosk-agent request ID status|cancel`: the request on the server. ID is a local enrollment
//! id or a request pk (an orphan's, say).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::oneshot::{valid_pk, Client};
use crate::queue::Queue;

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Read the request's status on the server.
    Status,
    /// Cancel the request on the server (`DELETE /request/{pk}`), e.g. an orphan left by a lost
    /// create answer. Nothing is ever cancelled without this command.
    Cancel,
}

/// The request pk an ID names: the pk itself, or the request of a local enrollment.
fn request_pk(queue: &Queue, id: &str) -> Result<String, Failure> {
    if valid_pk(id) {
        return Ok(id.to_owned());
    }
    let shown = queue.show(id)?;
    shown.request_pk.ok_or_else(|| {
        Failure::bad_input(anyhow::anyhow!("enrollment {id} has no request on the server yet (state {})", shown.state))
    })
}

pub async fn run(config: &Config, id: &str, command: RequestCommand) -> Result<ExitCode, Failure> {
    let queue = Queue::open(&config.storage)?;
    let client = Client::new(&config.oneshot)?;
    let pk = request_pk(&queue, id)?;
    match command {
        RequestCommand::Status => {
            let status = client.request_status(&pk).await.with_context(|| format!("reading request {pk}"))?;
            println!("request_pk {pk}: {status}");
        }
        RequestCommand::Cancel => {
            client.cancel_request(&pk).await.with_context(|| format!("cancelling request {pk}"))?;
            let noted = queue.note_request_cancelled(&pk)?;
            println!(
                "request_pk {pk}: cancelled on the server{}",
                noted.map(|e| format!(" (noted in {e})")).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
