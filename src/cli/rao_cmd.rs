//! `kiosk-agent rao token create|list|delete`: RAO tokens, so that the RAO's password and PIN
//! never live on the kiosk. `create` reads them from stdin for one `POST /token` call and keeps
//! only the token (0600); `[rao] token_file` then names it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{read_secret_line, Failure};
use crate::config::Config;
use crate::flow::net;
use crate::oneshot::Client;

#[derive(Debug, Subcommand)]
pub enum RaoCommand {
    /// The RAO's tokens on the server.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Trade the RAO's username, password and PIN (password and PIN read from stdin, one line
    /// each) for a token, written to --out (0600); set `[rao] token_file` to it.
    Create {
        /// The RAO's username (the password and PIN come from stdin).
        #[arg(long)]
        username: String,
        /// Where to write the token (a new file, or one replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// The uids of the RAO's tokens (not the tokens).
    List,
    /// Revoke one token by its uid.
    Delete {
        /// The token's uid, as `rao token list` shows it.
        uid: String,
    },
}

pub async fn run(config: &Config, command: RaoCommand) -> Result<ExitCode, Failure> {
    let client = Client::new(&config.oneshot)?;
    let RaoCommand::Token { command } = command;
    match command {
        TokenCommand::Create { username, out } => {
            if username.trim().is_empty() {
                return Err(Failure::bad_input(anyhow::anyhow!("--username: must not be empty")));
            }
            let password = zeroize::Zeroizing::new(read_secret_line("RAO password")?);
            let pin = zeroize::Zeroizing::new(read_secret_line("RAO PIN")?);
            let token = zeroize::Zeroizing::new(
                client
                    .create_rao_token(username.trim(), &password, &pin)
                    .await
                    .map_err(|e| net(e, "creating the RAO token", true))?,
            );
            kiosk_common::helper_args::write_durably(&out, format!("{}\n", token.as_str()).as_bytes())?;
            say!("{}: RAO token written (0600); set [rao] token_file = {:?}", out.display(), out.display().to_string());
        }
        TokenCommand::List => {
            let uids = client.list_rao_tokens().await.map_err(|e| net(e, "listing the RAO tokens", true))?;
            for uid in &uids {
                say!("{uid}");
            }
            if uids.is_empty() {
                say!("no RAO token");
            }
        }
        TokenCommand::Delete { uid } => {
            client.delete_rao_token(&uid).await.map_err(|e| net(e, "deleting the RAO token", true))?;
            say!("RAO token {uid} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
