//! The command-line interface. Errors become exit codes here: 2 for bad input or bad
//! configuration, 3 when `sync --once` leaves work behind, 1 for anything else.

pub use kiosk_common::helper_args as capture_args;

/// `println!` for the CLI's output: a closed pipe (`kiosk-agent doctor | head -1`) ends the
/// command quietly with exit 0, as a filter's reader expects, instead of a panic (exit 101).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod check_cmd;
mod doctor_cmd;
mod document_cmd;

mod queue_cmd;
mod rao_cmd;
mod request_cmd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError, CONFIG_ENV};
use crate::evidence::{validate_manifest, HelperProber, ManifestOptions};
pub use crate::failure::Failure;
use crate::queue::SealingEarly;
use crate::queue::{Queue, QueueError};
use crate::sync::Mode;

/// kiosk-agent: capture, queue and upload One-Shot External-mode VideoID evidence.
#[derive(Debug, Parser)]
#[command(name = "kiosk-agent", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands (an interface: see `docs/design.md`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job on embedded defaults against the built-in sandbox (no config needed).
    Demo {
        /// Capture from this camera instead of the synthetic one (e.g. camera:0).
        #[arg(long)]
        camera: Option<String>,
        /// Which Optimizer generation the built-in sandbox plays: current (the new one,
        /// /oneshot/api/v1) or legacy (the old one, /api/v1).
        #[arg(long, default_value = "current", value_parser = ["current", "legacy"])]
        layout: String,
        /// Continue past VIDEOREVIEW: approve, documents, contract, OTP, sign, retrieve, delete.
        #[arg(long)]
        full: bool,
    },
    /// The daemon: the sync worker, until SIGTERM or Ctrl-C.
    Run,
    /// The built-in One-Shot sandbox server.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Answer 401 to API requests without this header, e.g. "X-Api-Key: secret".
        #[arg(long, value_name = "NAME: VALUE")]
        require_header: Option<String>,
        /// Inject faults, e.g. "*:500=0.05,503=0.05;video:reset=0.1;create:drop=0.1;stall_secs=3"
        /// (see the README). SIGUSR1 takes the server offline (connections refused), SIGUSR2
        /// brings it back.
        #[arg(long, value_name = "SPEC")]
        faults: Option<String>,
        /// Accept only these billing credentials in create bodies; others are refused the way
        /// each generation does it (the old Optimizer: HTTP 500).
        #[arg(long, value_name = "USER:PASSWORD")]
        billing: Option<String>,
        /// Open the control API (/_sandbox/…) to non-loopback clients that send this token in
        /// the x-sandbox-control header.
        #[arg(long, value_name = "TOKEN")]
        control_token: Option<String>,
        /// How long an OTP blocks the next one (the Optimizer's 412 "less than a minute ago").
        #[arg(long, value_name = "SECS", default_value_t = 60.0)]
        otp_interval: f64,
        /// POST a webhook to this URL on every status change (in the creating generation's shape).
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
        /// Where a review's outcome and a signature show, where sources disagree: "ra" (the RA's
        /// documents: `videoid_data.status`, `ISSUED` after signing) or "request-status"
        /// (`VALIDATED`, `VIDEOID_REFUSED`, `SIGNED` as request statuses).
        #[arg(long, value_name = "MODEL", default_value = "ra")]
        outcomes: String,
        /// The first request pk to give (a sandbox started again for the same kiosk must not
        /// give the pks an earlier one gave).
        #[arg(long, value_name = "PK", default_value_t = 45_836, value_parser = clap::value_parser!(u64).range(1..))]
        first_request_pk: u64,
    },
    /// Validate an enrollment manifest and queue it; prints the enrollment id.
    Enroll {
        /// The manifest (JSON); artifact paths are relative to it.
        manifest: PathBuf,
        /// Allow artifact paths (and symlinks) that lead outside the manifest's folder.
        #[arg(long)]
        allow_outside: bool,
    },
    /// Send what is ready now, then exit (0: nothing left to send; 3: work remains).
    Sync {
        /// Exit once nothing more is ready (required; `run` is the long-running form).
        #[arg(long)]
        once: bool,
    },
    /// Inspect and act on the queue.
    Queue {
        #[command(subcommand)]
        command: queue_cmd::QueueCommand,
    },
    /// The request on the server (ID: a local enrollment id or a request pk).
    Request {
        /// A local enrollment id (a request pk with --pk).
        id: String,
        /// ID is a request pk, named on purpose (e.g. an orphan request); without it, ID is
        /// one of this kiosk's enrollments.
        #[arg(long)]
        pk: bool,
        #[command(subcommand)]
        command: request_cmd::RequestCommand,
    },
    /// The RAO's tokens: `rao token create` trades the password and PIN for a token once.
    Rao {
        #[command(subcommand)]
        command: rao_cmd::RaoCommand,
    },
    /// Documents to sign (ID: a local enrollment id or a request pk).
    Document {
        /// A local enrollment id (a request pk with --pk).
        id: String,
        /// ID is a request pk, named on purpose (e.g. an orphan request); without it, ID is
        /// one of this kiosk's enrollments.
        #[arg(long)]
        pk: bool,
        #[command(subcommand)]
        command: document_cmd::DocumentCommand,
    },
    /// Ask the server to send the customer the OTP (SMS, or WhatsApp).
    Otp {
        /// A local enrollment id (a request pk with --pk).
        id: String,
        /// ID is a request pk, named on purpose (e.g. an orphan request); without it, ID is
        /// one of this kiosk's enrollments.
        #[arg(long)]
        pk: bool,
        /// Send it by WhatsApp instead of SMS.
        #[arg(long)]
        whatsapp: bool,
    },
    /// Sign the request's documents with the OTP the customer received (or an external unlock).
    Sign {
        /// A local enrollment id (a request pk with --pk).
        id: String,
        /// ID is a request pk, named on purpose (e.g. an orphan request); without it, ID is
        /// one of this kiosk's enrollments.
        #[arg(long)]
        pk: bool,
        /// Refused: an OTP on the command line is visible to every local user. The OTP (or
        /// customer code) is read from stdin: a prompt at a terminal, a line from a pipe.
        #[arg(long, hide = true)]
        otp: Option<String>,
        /// An external authentication method instead of the OTP; its value is read from stdin.
        #[arg(long)]
        ext_unlock_type: Option<String>,
        /// Refused, like --otp: the value is read from stdin.
        #[arg(long, hide = true)]
        ext_unlock_value: Option<String>,
    },
    /// Keys: `key init` creates the master key on purpose; nothing else ever creates one.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The audit trail: `audit verify` checks its hash chain, `audit export` prints it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Validate the configuration and print every problem with its key.
    CheckConfig,
    /// Check everything the installation depends on, one line each with what to do (exit 0
    /// all well, 1 warnings, 2 a failure); creates nothing.
    Doctor,
    /// The camera commands, run by the `kiosk-agent-capture` helper.
    #[command(flatten)]
    Helper(capture_args::HelperCommand),
}

/// `kiosk-agent key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create the master key at `storage.master_key_file` (mode 0600); an existing key is never
    /// replaced.
    Init {
        /// Create it here instead (e.g. the file the unit's LoadCredential= hands in).
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

/// `kiosk-agent audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exit 4 naming the first broken record.
    Verify {
        /// `SEQ:HASH`, an audit head kept outside the kiosk (sent with an upload as
        /// `acceptance.kiosk_audit_head`): record SEQ must still carry HASH.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Write every record as JSON lines (to standard output).
    Export,
}

/// Parses the command line and runs the command.
pub fn main() -> Result<ExitCode, Failure> {
    crate::harden::apply();
    let cli = Cli::parse();
    crate::queue::audit::set_actor(&command_name(&cli.command));
    init_logging(matches!(cli.command, Command::Run | Command::Sandbox { .. }), cli.config.as_deref());
    match cli.command {
        Command::Demo { camera, layout, full } => {
            let generation =
                if layout == "legacy" { crate::oneshot::Generation::Old } else { crate::oneshot::Generation::New };
            runtime()?.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(anyhow::Error::from)?;
                // On Ctrl-C or SIGTERM the demo is dropped: its temporary directory (with the
                // captured images) is removed and its capture helper killed.
                let mut stdout = std::io::stdout();
                tokio::select! {
                    done = crate::demo::run(&mut stdout, camera.as_deref(), generation, full) => {
                        done.map(|()| ExitCode::SUCCESS).map_err(Failure::from)
                    }
                    _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(130)),
                    _ = term.recv() => Ok(ExitCode::from(143)),
                }
            })
        }
        Command::Helper(_) => Ok(crate::helper::exec()?),
        Command::CheckConfig => check_config(cli.config.as_deref()),
        Command::Doctor => {
            let config = load_config(cli.config.as_deref())?;
            Ok(runtime()?.block_on(doctor_cmd::run(&config)))
        }
        Command::Audit { command } => audit(&load_config(cli.config.as_deref())?, command),
        Command::Key { command: KeyCommand::Init { path } } => {
            let config = load_config(cli.config.as_deref())?;
            let keys = KeyFiles {
                master: path.as_deref().unwrap_or(&config.storage.master_key_file),
                device: &config.storage.device_key_file,
                api_token: &config.api.token_file,
            };
            key_init(&keys)
        }
        Command::Sandbox {
            listen,
            require_header,
            faults,
            billing,
            control_token,
            otp_interval,
            webhook,
            outcomes,
            first_request_pk,
        } => {
            let outcomes: kiosk_sandbox::Outcomes =
                outcomes.parse().map_err(|e: String| Failure::bad_input(anyhow::anyhow!(e)))?;
            if !(otp_interval.is_finite() && otp_interval >= 0.0) {
                return Err(Failure::bad_input(anyhow::anyhow!("--otp-interval: seconds expected")));
            }
            let billing = match billing.as_deref().map(|b| b.split_once(':')) {
                None => None,
                Some(Some((user, password))) if !user.is_empty() => Some((user.to_owned(), password.to_owned())),
                Some(_) => return Err(Failure::bad_input(anyhow::anyhow!("--billing: expected USER:PASSWORD"))),
            };
            let otp_interval = std::time::Duration::from_secs_f64(otp_interval);
            if let Some(url) = &webhook {
                url::Url::parse(url).map_err(|e| Failure::bad_input(anyhow::anyhow!("--webhook: {e}")))?;
            }
            let setup = SandboxSetup {
                require_header,
                faults,
                billing,
                control_token,
                otp_interval,
                webhook,
                outcomes,
                first_request_pk,
            };
            runtime()?.block_on(sandbox(&listen, setup))
        }
        Command::Enroll { manifest, allow_outside } => {
            enroll(&load_config(cli.config.as_deref())?, &manifest, allow_outside)
        }
        Command::Sync { once } => {
            if !once {
                return Err(Failure::bad_input(anyhow::anyhow!("sync needs --once; `kiosk-agent run` is the daemon")));
            }
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(work(config, Mode::Once))
        }
        Command::Run => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(work(config, Mode::Forever))
        }
        Command::Queue { command } => queue_cmd::run(&load_config(cli.config.as_deref())?, command),
        Command::Document { id, pk, command } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(document_cmd::run(&config, &id, id_kind(pk), command))
        }
        Command::Otp { id, pk, whatsapp } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(request_cmd::otp(&config, &id, id_kind(pk), whatsapp))
        }
        Command::Sign { id, pk, otp, ext_unlock_type, ext_unlock_value } => {
            for (flag, given) in [("--otp", otp.is_some()), ("--ext-unlock-value", ext_unlock_value.is_some())] {
                if given {
                    return Err(Failure::bad_input(anyhow::anyhow!(
                        "{flag}: a secret on the command line is visible to every local user (ps, /proc); \
                         give it on stdin instead (at the prompt, or `kiosk-agent sign ID < file`)"
                    )));
                }
            }
            let what = if ext_unlock_type.is_some() { "external unlock value" } else { "OTP" };
            let secret = read_secret_line(what)?;
            let unlock = match ext_unlock_type {
                Some(kind) => crate::oneshot::Unlock::External { kind, value: secret },
                None => crate::oneshot::Unlock::Otp(secret),
            };
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(request_cmd::sign(&config, &id, id_kind(pk), unlock))
        }
        Command::Request { id, pk, command } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(request_cmd::run(&config, &id, id_kind(pk), command))
        }
        Command::Rao { command } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(rao_cmd::run(&config, command))
        }
    }
}

pub use kiosk_common::log::{init as init_logging, LOG_FORMAT_ENV};

/// Writes a command's report to stdout, buffered. A reader that went away before the end
/// (`queue list | head`) is not an error: the command ends quietly, as `cat` does, instead of
/// panicking in `println!`.
/// Writes one line to stdout; a closed pipe ends the process quietly (exit 0): nobody reads
/// what is left to say. Any other write failure is reported and exits 1.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

pub(crate) fn print_out(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), Failure> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // Dropping the writer would try to flush again into the closed pipe.
            let _ = out.into_parts();
            Ok(())
        }
        other => other.context("cannot write to stdout").map_err(Failure::from),
    }
}

/// The command as the audit trail names it, such as `queue retry`: the subcommands only, never
/// arguments (they can name customers' files).
fn command_name(command: &Command) -> String {
    let word = |debug: String| debug.split([' ', '{', '(']).next().unwrap_or_default().to_lowercase();
    match command {
        Command::Queue { command } => format!("queue {}", word(format!("{command:?}"))),
        Command::Request { command, .. } => format!("request {}", word(format!("{command:?}"))),
        Command::Document { command, .. } => format!("document {}", word(format!("{command:?}"))),
        Command::Rao { command: rao_cmd::RaoCommand::Token { command } } => {
            format!("rao token {}", word(format!("{command:?}")))
        }
        Command::Helper(command) => word(format!("{command:?}")),
        other => word(format!("{other:?}")),
    }
}

/// `--anchor SEQ:HASH` of `audit verify`.
fn parse_anchor(anchor: Option<&str>) -> Result<Option<(i64, &str)>, Failure> {
    let Some(text) = anchor else { return Ok(None) };
    let parsed = text.split_once(':').and_then(|(seq, hash)| {
        let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        seq.parse::<i64>().ok().filter(|n| *n > 0 && hex).map(|n| (n, hash))
    });
    parsed.map(Some).ok_or_else(|| {
        Failure::bad_input(anyhow::anyhow!(
            "--anchor: expected SEQ:HASH (a record number and 64 hex digits), not {text:?}"
        ))
    })
}

fn id_kind(pk: bool) -> crate::flow::IdKind {
    if pk {
        crate::flow::IdKind::RequestPk
    } else {
        crate::flow::IdKind::Enrollment
    }
}

/// One line of stdin holding a secret (`what`, e.g. the OTP): a prompt on stderr when stdin is
/// a terminal (echo off), else the first line of the pipe or file. Empty is refused.
fn read_secret_line(what: &str) -> Result<String, Failure> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("{what}: ");
    }
    let echo = terminal.then(|| rustix::termios::tcgetattr(&stdin).ok()).flatten();
    if let Some(attrs) = &echo {
        let mut quiet = attrs.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if let Some(attrs) = &echo {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, attrs);
        eprintln!();
    }
    read.with_context(|| format!("cannot read the {what} from stdin"))?;
    let value = line.trim();
    if value.is_empty() {
        return Err(Failure::bad_input(anyhow::anyhow!("stdin: the {what} must not be empty (one line)")));
    }
    Ok(value.to_owned())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?)
}

fn config_path(path: Option<&Path>) -> Result<&Path, Failure> {
    path.ok_or_else(|| Failure::bad_input(anyhow::anyhow!("no configuration: pass --config PATH or set {CONFIG_ENV}")))
}

fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    Ok(config::load(config_path(path)?)?)
}

fn check_config(path: Option<&Path>) -> Result<ExitCode, Failure> {
    let path = config_path(path)?;
    match config::load(path) {
        Ok(c) => {
            let problems = check_cmd::environment_problems(&c);
            if !problems.is_empty() {
                for p in &problems {
                    say!("{p}");
                }
                return Err(Failure::bad_input(anyhow::anyhow!("{}: {} problem(s)", path.display(), problems.len())));
            }
            say!("{}: OK", path.display());
            say!("  One-Shot server  {} (layout {})", c.oneshot.base_url, c.oneshot.generation.layout_name());
            say!("  data directory   {}", c.storage.data_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(problems)) => {
            for p in &problems {
                say!("{p}");
            }
            Err(Failure::bad_input(anyhow::anyhow!("{}: {} problem(s)", path.display(), problems.len())))
        }
        Err(e) => Err(e.into()),
    }
}

/// The files `key init` creates.
struct KeyFiles<'a> {
    master: &'a Path,
    device: &'a Path,
    api_token: &'a Path,
}

/// `key init`: creates whichever of the master key, the device signing key and the local API's
/// token is missing; an existing one is never replaced, so it fails only when all exist.
fn key_init(keys: &KeyFiles<'_>) -> Result<ExitCode, Failure> {
    let mut created = 0;
    if keys.master.exists() {
        say!("master key exists: {} (kept)", keys.master.display());
    } else {
        let key = crate::crypto::create_master_key(keys.master).map_err(|e| Failure::from(QueueError::from(e)))?;
        say!(
            "master key created: {} (fingerprint {}); back it up: without it the queue cannot be read",
            keys.master.display(),
            key.fingerprint()
        );
        created += 1;
    }
    if keys.device.exists() {
        say!("device key exists: {} (kept)", keys.device.display());
    } else {
        let key = crate::device_key::create(keys.device).map_err(Failure::bad_input)?;
        say!(
            "device key created: {} (device {}, public key {})",
            keys.device.display(),
            key.device_id(),
            key.public_key_hex()
        );
        created += 1;
    }
    if std::fs::symlink_metadata(keys.api_token).is_ok() {
        say!("API token exists: {} (kept)", keys.api_token.display());
    } else {
        crate::api::token::create(keys.api_token).map_err(Failure::bad_input)?;
        say!("API token created: {} (0600; the operator page asks for it once per session)", keys.api_token.display());
        created += 1;
    }
    if created == 0 {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "the keys and the API token already exist; `key init` never replaces one (the queued evidence is encrypted under the key)"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn audit(config: &Config, command: AuditCommand) -> Result<ExitCode, Failure> {
    let queue = Queue::open(&config.storage)?;
    match command {
        AuditCommand::Verify { anchor } => match queue.verify_audit(parse_anchor(anchor.as_deref())?)? {
            Ok(n) => {
                say!("audit trail: {n} records, chain intact");
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => Err(Failure {
                code: 4,
                error: anyhow::anyhow!("audit trail broken at record {}: {}", broken.seq, broken.reason),
            }),
        },
        AuditCommand::Export => {
            let records = queue.audit_records()?;
            print_out(|out| {
                for record in &records {
                    serde_json::to_writer(&mut *out, record)?;
                    writeln!(out)?;
                }
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn enroll(config: &Config, manifest: &Path, allow_outside: bool) -> Result<ExitCode, Failure> {
    // Validate before anything is written, so bad input leaves nothing on disk. A queue that
    // exists already is opened first: the video is then sealed into an unnamed file while the
    // rest is checked (see `queue::SealingEarly`). A daemon running on this data directory
    // keeps a standby ready to probe the video.
    let prober = HelperProber::standby_in(&config.storage.data_dir);
    let existing = crate::queue::database_path(&config.storage.data_dir).exists();
    let queue = if existing { Some(Queue::open(&config.storage)?) } else { None };
    let sealing = queue.as_ref().map(|queue| SealingEarly { probe: &prober, queue, early: Default::default() });
    let video: &dyn crate::evidence::VideoProber = match &sealing {
        Some(sealing) => sealing,
        None => &prober,
    };
    let options = ManifestOptions { allow_outside, video, generation: config.oneshot.generation, sealed: None };
    let enrollment = validate_manifest(manifest, &config.evidence, options)?;
    let early = sealing.and_then(|s| s.early.into_inner());
    let queue = match queue {
        Some(queue) => queue,
        None => {
            // A queue that does not exist yet is created now, so the probe's verdict comes first.
            enrollment.video_media()?;
            Queue::open(&config.storage)?
        }
    };
    let total = enrollment.images.iter().chain([&enrollment.video]).map(|a| a.size).sum();
    let progress = crate::progress::Progress::new("enroll: encrypting", total, crate::progress::Unit::Bytes);
    let id = queue.enqueue_with_early_video(&enrollment, &|done| progress.set(done), early);
    progress.finish();
    let id = id?;
    queue.poke_worker();
    say!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The sandbox's options beyond its address.
#[derive(Debug)]
struct SandboxSetup {
    require_header: Option<String>,
    faults: Option<String>,
    billing: Option<(String, String)>,
    control_token: Option<String>,
    otp_interval: std::time::Duration,
    webhook: Option<String>,
    outcomes: kiosk_sandbox::Outcomes,
    first_request_pk: u64,
}

async fn sandbox(listen: &str, setup: SandboxSetup) -> Result<ExitCode, Failure> {
    let plan = match setup.faults.as_deref() {
        Some(spec) => {
            kiosk_sandbox::FaultPlan::parse(spec).map_err(|e| Failure::bad_input(anyhow::anyhow!("--faults: {e}")))?
        }
        None => kiosk_sandbox::FaultPlan::default(),
    };
    let required_header = match setup.require_header.as_deref().map(|h| h.split_once(':')) {
        None => None,
        Some(Some((name, value))) if !name.trim().is_empty() => {
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        }
        Some(_) => {
            return Err(Failure::bad_input(anyhow::anyhow!("--require-header: expected \"Name: value\"")));
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
        .map_err(Failure::bad_input)?;
    let addr = listener.local_addr().context("local address")?;
    // One write, errors ignored: a supervisor that reads only the first line and closes the
    // pipe must not take the server down.
    let banner = format!(
        "One-Shot sandbox listening on http://{addr}\n  new Optimizer (layout current): http://{addr}/oneshot/api/v1    \
         old Optimizer (layout legacy): http://{addr}/api/v1\n  received so far: http://{addr}/_sandbox/requests\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let state = kiosk_sandbox::Shared::default();
    {
        let mut st = state.lock().expect("not yet shared");
        st.required_header = required_header;
        st.faults = plan;
        st.billing = setup.billing;
        st.control_token = setup.control_token;
        st.signing.otp_interval = Some(setup.otp_interval);
        st.outcomes = setup.outcomes;
        st.pk_base = setup.first_request_pk - 1;
    }
    if let Some(url) = setup.webhook {
        tokio::spawn(kiosk_sandbox::webhooks::run(state.clone(), url));
    }
    let switch = state.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut off), Ok(mut on)) = (signal(SignalKind::user_defined1()), signal(SignalKind::user_defined2()))
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = off.recv() => kiosk_sandbox::set_online(&switch, false),
                _ = on.recv() => kiosk_sandbox::set_online(&switch, true),
            }
        }
    });
    kiosk_sandbox::serve(listener, state, shutdown_signal()).await.context("sandbox server")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed now, not when the future is first
/// polled: the daemon says READY=1 before it polls it, and a SIGTERM in between must still stop
/// it gracefully rather than kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

async fn work(config: Config, mode: Mode) -> Result<ExitCode, Failure> {
    // A batch run serves nothing: it must not take the daemon's addresses.
    let listeners = match mode {
        Mode::Forever => {
            crate::api::token::require(&config.api).map_err(Failure::bad_input)?;
            crate::daemon::Listeners::bind(&config).await.map_err(Failure::bad_input)?
        }
        Mode::Once => crate::daemon::Listeners::default(),
    };
    let outcome = match crate::daemon::run(config, mode, listeners, shutdown_signal()).await {
        Ok(outcome) => outcome,
        // A batch run beside a running daemon: the work is in hands already; "work remains".
        Err(e) if mode == Mode::Once && matches!(e.downcast_ref::<QueueError>(), Some(QueueError::WorkerBusy(_))) => {
            eprintln!("sync: another worker is running (the daemon?); it sends the queue");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    if mode == Mode::Once {
        // The one-line summary; 3 when work remains or something needs an operator.
        say!(
            "sync: {} delivered, {} failed, {} ended by the server, {} pending, {} failed verification, {} erased by retention",
            outcome.delivered,
            outcome.failed,
            outcome.ended,
            outcome.pending,
            outcome.failed_verification,
            outcome.erased_by_retention
        );
        let needs_a_person = outcome.failed + outcome.failed_verification + outcome.erased_by_retention;
        if outcome.pending > 0 || needs_a_person > 0 {
            eprintln!("see `kiosk-agent queue list` for what is pending or failed");
            return Ok(ExitCode::from(3));
        }
    }
    Ok(ExitCode::SUCCESS)
}
