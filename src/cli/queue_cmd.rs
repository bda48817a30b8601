//! `kiosk-agent queue list|show|retry|purge`.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::queue::{now_ms, Queue, QueueError, State, Summary};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List enrollments, oldest first: pending and failed ones (completed ones with --all).
    List {
        /// Print a JSON array instead of a table (every enrollment, unless --state).
        #[arg(long)]
        json: bool,
        /// Only enrollments in this state (queued, creating, …, in_review, failed, …).
        #[arg(long)]
        state: Option<String>,
        /// Also show completed enrollments (in review and beyond, cancelled, refused).
        #[arg(long)]
        all: bool,
    },
    /// Show one enrollment with its artifacts and history.
    Show {
        /// The enrollment id (as `queue list` shows it).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a failed enrollment from the step it failed at.
    Retry {
        /// The enrollment id.
        id: String,
    },
    /// Delete an enrollment and its local files (pending ones only with --force).
    Purge {
        /// The enrollment id.
        id: String,
        /// Also discard evidence that has not reached the server.
        #[arg(long)]
        force: bool,
    },
    /// Decrypt and hash-check every queued artifact and every document waiting to be sent now
    /// (the daemon checks the artifacts at start); an enrollment whose evidence is damaged or
    /// missing becomes `failed`; a damaged document is named; either is exit 4.
    Verify,
    /// After a lost database: list what the encrypted spool holds (needs no database), and
    /// say the ways out.
    Salvage {
        /// Move the spool and the documents aside (`lost-<time>/`, kept for a restored
        /// database) so that a new, empty queue can start here.
        #[arg(long)]
        discard: bool,
    },
}

pub fn run(config: &Config, command: QueueCommand) -> Result<ExitCode, Failure> {
    if let QueueCommand::Salvage { discard } = command {
        return salvage(config, discard);
    }
    // A database lost beside a spool is never read as an empty queue.
    crate::queue::identity::check_not_lost(&config.storage.data_dir)?;
    // Reading never creates anything: without a database there is nothing queued yet. The key
    // is still checked (present, private), as for every command.
    let exists = crate::queue::database_path(&config.storage.data_dir).exists();
    if !exists {
        crate::crypto::load_master_key(&config.storage.master_key_file).map_err(QueueError::from)?;
    }
    match (&command, exists) {
        (QueueCommand::List { json: true, .. }, false) => {
            say!("[]");
            return Ok(ExitCode::SUCCESS);
        }
        (QueueCommand::List { json: false, .. }, false) => {
            say!("nothing queued yet ({} has no queue)", config.storage.data_dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        (QueueCommand::Verify, false) => {
            say!("nothing queued yet ({} has no queue)", config.storage.data_dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        (QueueCommand::Show { id, .. } | QueueCommand::Retry { id } | QueueCommand::Purge { id, .. }, false) => {
            return Err(Failure::bad_input(anyhow::anyhow!("no enrollment {id}: nothing is queued yet")));
        }
        _ => {}
    }
    let queue = Queue::open(&config.storage)?;
    match command {
        QueueCommand::List { json, state, all } => {
            let wanted: Option<State> = match state.as_deref() {
                None => None,
                Some(s) => Some(s.parse().map_err(|_| {
                    let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                    Failure::bad_input(anyhow::anyhow!("--state: must be one of {}, not {s:?}", names.join(", ")))
                })?),
            };
            let rows: Vec<Summary> =
                queue.list()?.into_iter().filter(|r| wanted.is_none_or(|w| r.state == w)).collect();
            if json {
                super::print_out(|out| writeln!(out, "{}", serde_json::to_string_pretty(&rows)?))?;
            } else {
                super::print_out(|out| print_table(out, &rows, all || wanted.is_some()))?;
            }
        }
        QueueCommand::Show { id, json: true } => {
            let shown = serde_json::to_string_pretty(&queue.show(&id)?)?;
            super::print_out(|out| writeln!(out, "{shown}"))?;
        }
        QueueCommand::Show { id, json: false } => {
            let shown = queue.show(&id)?;
            super::print_out(|out| print_detail(out, &shown))?;
        }
        QueueCommand::Retry { id } => {
            let state = queue.retry(&id)?;
            queue.poke_worker();
            say!("{id}: re-queued ({state})");
        }
        QueueCommand::Purge { id, force } => {
            queue.purge(&id, force)?;
            say!("{id}: purged");
        }
        QueueCommand::Verify => {
            let pending = queue.pending_count()?;
            let damaged = queue.scrub(&|_| false)?;
            say!("verified the evidence of {pending} pending enrollment(s): {} damaged", damaged.len());
            for id in &damaged {
                say!("damaged: {id} (now failed; see `queue show {id}`)");
            }
            let documents = queue.verify_documents()?;
            say!("verified the documents waiting to be sent: {} damaged", documents.len());
            for (id, name, problem) in &documents {
                say!("damaged: document {name} of {id}: {problem} (`document {id} delete-queued {name}` removes it)");
            }
            if !damaged.is_empty() || !documents.is_empty() {
                return Ok(ExitCode::from(4));
            }
        }
        QueueCommand::Salvage { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `queue salvage [--discard]`: what the spool holds when the database is lost, and the ways
/// out. Each enrollment's data key was wrapped in the database: without it (or a backup of it)
/// the spool cannot be decrypted, by anyone.
fn salvage(config: &Config, discard: bool) -> Result<ExitCode, Failure> {
    use crate::queue::identity::{self, SpoolContents};
    let dir = &config.storage.data_dir;
    let lost = identity::check_not_lost(dir);
    let contents = SpoolContents::of(dir)?;
    let mut out = String::new();
    for (id, files) in &contents.enrollments {
        let listed: Vec<String> = files.iter().map(|(name, size)| format!("{name} ({size} bytes)")).collect();
        out.push_str(&format!("enrollment {id}: {}\n", listed.join(", ")));
    }
    for (name, size) in &contents.documents {
        out.push_str(&format!("document {name} ({size} bytes)\n"));
    }
    if contents.is_empty() {
        out.push_str("the spool holds nothing\n");
    }
    match (&lost, discard) {
        (Ok(()), _) => {
            out.push_str("the queue database is in place: nothing to salvage (see `queue list`)\n");
        }
        (Err(_), false) => out.push_str(
            "the queue database is lost: these are sealed with keys only it held. Ways out: \
             restore queue.db (and queue.db-wal) from a backup and run `kiosk-agent doctor`; or, \
             once the evidence is captured again, `queue salvage --discard` moves the spool aside \
             so that a new queue can start\n",
        ),
        (Err(_), true) => {
            let aside = dir.join(format!("lost-{}", now_ms()));
            crate::fsutil::create_dir_all_durable(&aside).map_err(crate::queue::io_err(&aside))?;
            for part in ["spool", "documents"] {
                let from = dir.join(part);
                if from.exists() {
                    std::fs::rename(&from, aside.join(part)).map_err(crate::queue::io_err(&from))?;
                }
            }
            crate::fsutil::sync_dir(dir).map_err(crate::queue::io_err(dir))?;
            identity::forget(dir)?;
            out.push_str(&format!(
                "moved the spool aside to {} (kept for a restored database); a new queue can start here\n",
                aside.display()
            ));
        }
    }
    super::print_out(|w| w.write_all(out.as_bytes()))?;
    Ok(ExitCode::SUCCESS)
}

/// Completed: nothing more for the worker to send (review and beyond, or ended by the server).
fn completed(state: State) -> bool {
    !state.is_pending() && state != State::Failed
}

/// The terminal's width for cutting the last column (`COLUMNS`, the terminal, or 160).
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| rustix::termios::tcgetwinsize(std::io::stdout()).ok().map(|w| w.ws_col as usize).filter(|&w| w > 0))
        .unwrap_or(160)
}

/// The state, or the upload in progress: `uploading 43% (86 of 200 MB)`.
fn state_text(r: &Summary) -> String {
    match r.upload {
        Some(u) if u.total > 0 => format!(
            "uploading {}% ({} of {} MB)",
            u.sent * 100 / u.total,
            u.sent / 1_000_000,
            u.total.div_ceil(1_000_000)
        ),
        _ => r.state.as_str().to_owned(),
    }
}

/// When the next attempt is due, relative to now.
fn next_attempt(r: &Summary) -> String {
    let Some(at) = r.next_attempt_at.as_deref().filter(|_| r.state.is_pending()) else { return "-".into() };
    let Ok(t) = humantime::parse_rfc3339(at) else { return "-".into() };
    match t.duration_since(std::time::SystemTime::now()) {
        Ok(d) if d.as_secs() > 0 => {
            format!("in {}", humantime::format_duration(std::time::Duration::from_secs(d.as_secs())))
        }
        _ => "due".into(),
    }
}

fn print_table(out: &mut dyn Write, all_rows: &[Summary], show_completed: bool) -> io::Result<()> {
    let rows: Vec<&Summary> = all_rows.iter().filter(|r| show_completed || !completed(r.state)).collect();
    let hidden = all_rows.len() - rows.len();
    if rows.is_empty() {
        writeln!(
            out,
            "nothing pending or failed{}",
            if hidden > 0 { format!(" ({hidden} completed; --all shows them)") } else { String::new() }
        )?;
        return Ok(());
    }
    let head = format!(
        "{:<36}  {:<30}  {:>8}  {:>10}  {:>10}  {:<14}  {:>10}  ",
        "ID", "STATE", "ATTEMPTS", "REQUEST", "VIDEOID", "NEXT ATTEMPT", "BYTES"
    );
    let room = width().saturating_sub(head.chars().count()).max(20);
    writeln!(out, "{head}LAST ERROR")?;
    for r in &rows {
        let error: String = r.last_error.as_deref().unwrap_or("").chars().take(room).collect();
        writeln!(
            out,
            "{:<36}  {:<30}  {:>8}  {:>10}  {:>10}  {:<14}  {:>10}  {error}",
            r.id,
            state_text(r),
            r.attempts,
            r.request_pk.as_deref().unwrap_or("-"),
            r.videoid_pk.as_deref().unwrap_or("-"),
            next_attempt(r),
            r.bytes,
        )?;
    }
    if hidden > 0 {
        writeln!(out, "({hidden} completed not shown; --all shows them)")?;
    }
    let b = crate::queue::Backlog::of(all_rows);
    let oldest =
        b.oldest_pending.map(|d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string());
    writeln!(
        out,
        "\n{} pending ({} bytes, oldest {}), {} failed, {} in all",
        b.pending,
        b.pending_bytes,
        oldest.as_deref().unwrap_or("-"),
        b.failed,
        all_rows.len()
    )?;
    Ok(())
}

fn print_detail(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "id             {}", s.id)?;
    writeln!(out, "state          {}", s.state)?;
    writeln!(out, "request_pk     {}", s.request_pk.as_deref().unwrap_or("-"))?;
    writeln!(out, "videoid_pk     {}", s.videoid_pk.as_deref().unwrap_or("-"))?;
    writeln!(out, "server status  {}", s.server_status.as_ref().map_or("-", |st| st.as_str()))?;
    writeln!(out, "attempts       {}", s.attempts)?;
    writeln!(out, "last error     {}", s.last_error.as_deref().unwrap_or("-"))?;
    if let Some(next) = &s.next_attempt_at {
        let due = humantime::parse_rfc3339(next)
            .ok()
            .map(|t| (t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64) <= now_ms());
        writeln!(out, "next attempt   {next}{}", if due == Some(true) { " (due)" } else { "" })?;
    }
    writeln!(out, "created        {}", s.created_at)?;
    writeln!(
        out,
        "evidence       {}",
        if s.erased { "erased locally (audit record kept)" } else { "held locally, encrypted" }
    )?;
    for a in s.artifacts.iter().flatten() {
        writeln!(out, "  {:<16} {:<5} {:>10} bytes  sha256 {}", a.name, a.kind, a.size, a.sha256)?;
    }
    if let Some(m) = &s.capture_manifest {
        let valid = m["signature_valid"].as_bool() == Some(true);
        let verdict = match (valid, m["signed_by_this_device"].as_bool()) {
            (_, Some(false)) => "SIGNED BY ANOTHER KEY: not this device's key; the manifest was replaced",
            (true, Some(true)) => "signature valid, by this device's key",
            (true, None) => "signature valid (this device's key is unreadable: not compared)",
            (false, _) => "SIGNATURE INVALID: the manifest was changed",
        };
        writeln!(
            out,
            "capture        manifest signed by device {} ({verdict})",
            m["manifest"]["device_id"].as_str().unwrap_or("?"),
        )?;
    }
    writeln!(out, "history")?;
    for e in s.history.iter().flatten() {
        writeln!(out, "  {}  {:<16} {}", e.at, e.kind, e.detail)?;
    }
    Ok(())
}
