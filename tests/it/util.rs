//! Helpers to drive the binary and the sandbox (the ripgrep `tests/util.rs` pattern).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_kiosk-agent");

pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples")
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The address of a daemon's log line "API listening addr=…", if it is there yet: a daemon
/// told to listen on port 0 gets a port from the kernel as it binds, which no other test can
/// take in between (as it can a port found free first and bound later).
fn api_address(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("API listening addr="))?;
    line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Starts `kiosk-agent run` on `env` and waits until its API listens; its address.
pub fn spawn_daemon(env: &Env) -> (Guard, SocketAddr) {
    // The daemon's log is kept beside its data, for a failing test to quote
    // (`Daemon::log_tail` in the API tests).
    let log_path = env.dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = env.cmd().arg("run").stdout(Stdio::null()).stderr(log).spawn_guarded();
    // The daemon says where its API listens once it holds the socket.
    let addr = wait_for(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = api_address(&log) {
            return Ok(addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon ended ({status}) before its API listened:\n{log}");
        }
        Err(format!("no \"API listening\" line yet:\n{log}"))
    });
    (child, addr)
}

/// A temp dir with a configuration pointing at `127.0.0.1:port`.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    pub fn new(port: u16) -> Env {
        Env::with_config(port, "current", "")
    }

    /// `extra` is appended to the configuration (TOML sections).
    pub fn with_config(port: u16, layout: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let prefix = if layout == "legacy" { "/api/v1" } else { "/oneshot/api/v1" };
        let config = dir.path().join("kiosk-agent.toml");
        // Short backoff so retries in tests take milliseconds, not minutes.
        let text = format!(
            "[oneshot]\nbase_url = \"http://127.0.0.1:{port}{prefix}\"\nlayout = \"{layout}\"\n\
             registration_authority = \"139\"\nprofile = \"PFnubeQAFCiudadano\"\nconnect_timeout_secs = 2\nrequest_timeout_secs = 10\n\
             [api]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\ndata_dir = \"data\"\nmin_free_bytes = 0\n\
             [sync]\nbackoff_base_secs = 0.05\nbackoff_cap_secs = 0.2\nstatus_poll_secs = 0.05\n{extra}"
        );
        std::fs::write(&config, text).unwrap();
        let env = Env { dir, config };
        // The key is created on purpose, as an installer would; nothing else creates one.
        let out = env.run(&["key", "init"]);
        assert!(out.status.success(), "key init: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).env_remove("KIOSK_AGENT_CONFIG").env_remove("CREDENTIALS_DIRECTORY");
        c
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        let mut cmd = self.cmd();
        cmd.args(args);
        let output = cmd.output().unwrap();
        Ran::of(&cmd, output)
    }

    /// Runs `args` with `stdin` as its standard input (secrets never go on a command line).
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Ran {
        use std::io::Write as _;
        let mut cmd = self.cmd();
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        Ran::of(&cmd, child.wait_with_output().unwrap())
    }

    /// `sign ID` with the OTP on stdin.
    pub fn sign(&self, id: &str, otp: &str) -> Ran {
        self.run_with_stdin(&["sign", id], &format!("{otp}\n"))
    }

    /// A copy of the samples in its own folder, the manifest edited by `edit`, and `salt` bytes
    /// appended to every artifact so each enrollment's files differ.
    pub fn manifest(&self, name: &str, salt: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(samples_dir()).unwrap().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".jpg") || file.ends_with(".mp4") {
                let mut bytes = std::fs::read(entry.path()).unwrap();
                bytes.extend_from_slice(salt.as_bytes());
                std::fs::write(dir.join(&file), bytes).unwrap();
            }
        }
        let mut manifest: Value =
            serde_json::from_slice(&std::fs::read(samples_dir().join("manifest.json")).unwrap()).unwrap();
        edit(&mut manifest);
        let path = dir.join("manifest.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        path
    }

    /// Enrolls a manifest and returns its id, asserting success.
    pub fn enroll(&self, manifest: &Path) -> String {
        let out = self.cmd().arg("enroll").arg(manifest).output().unwrap();
        assert!(out.status.success(), "enroll failed: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(id.len(), 36, "enroll prints the id: {id:?}");
        id
    }

    pub fn list(&self) -> Vec<Value> {
        let out = self.run(&["queue", "list", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    }

    pub fn show(&self, id: &str) -> Value {
        let out = self.run(&["queue", "show", id, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A `kiosk-agent sandbox` process, killed on drop.
pub struct Sandbox {
    child: Child,
    pub addr: SocketAddr,
    // Kept open for the server's lifetime: it may still write to its stdout.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Sandbox {
    pub fn start(port: u16) -> Sandbox {
        Sandbox::start_with(port, &[])
    }

    /// A sandbox with extra command-line arguments.
    pub fn start_with(port: u16, args: &[&str]) -> Sandbox {
        let mut child = Command::new(BIN)
            .args(["sandbox", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            // SANDBOX_LOG=debug shows what a test's sandbox did.
            .env("KIOSK_AGENT_LOG", std::env::var("SANDBOX_LOG").unwrap_or("warn".into()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let addr = first.trim().rsplit("http://").next().unwrap().parse().unwrap_or_else(|_| panic!("{first:?}"));
        Sandbox { child, addr, _stdout: stdout }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn records(&self) -> Value {
        http("GET", &self.url("/_sandbox/requests"), None).1
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request over loopback; returns the status and the JSON body. Connection refusals
/// are retried for a few seconds: a sandbox with a flapping network refuses now and then.
pub fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut req = client.request(method.parse().unwrap(), url);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    return (status, resp.json().await.unwrap_or(Value::Null));
                }
                Err(e) if e.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{method} {url}: {e}"),
            }
        }
    })
}

/// One HTTP request with a raw body; returns the status and the JSON body (`null` if none).
pub fn http_raw(method: &str, url: &str, body: &[u8]) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

/// Moves a request on the sandbox to any status (its control API).
pub fn set_status(sandbox: &Sandbox, request_pk: &str, status: &str) {
    let (code, body) = http(
        "POST",
        &sandbox.url(&format!("/_sandbox/requests/{request_pk}/status")),
        Some(json!({ "status": status })),
    );
    assert_eq!(code, 200, "{body}");
}

/// Adds a sandbox rule (see `POST /_sandbox/rules`).
pub fn rule(sandbox: &Sandbox, rule: Value) {
    let (code, body) = http("POST", &sandbox.url("/_sandbox/rules"), Some(rule));
    assert_eq!(code, 200, "{body}");
}

/// Makes the sandbox refuse `op` for `email` with `status` and `details`.
pub fn refuse(sandbox: &Sandbox, op: &str, email: &str, status: u16, details: &str) {
    let (code, _) = http(
        "POST",
        &sandbox.url("/_sandbox/rules"),
        Some(json!({"op": op, "email": email, "status": status, "details": details})),
    );
    assert_eq!(code, 200);
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound against hangs, not a timing claim).
/// A spawned process that is killed and reaped when the test lets go of it, however the test
/// ends (a failed assertion included): no daemon outlives its test.
#[derive(Debug)]
pub struct Guard(Option<Child>);

impl Guard {
    /// Waits for the process to end by itself and collects its output.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0.take().expect("the child is there until waited for").wait_with_output()
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("the child is there until waited for")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is there until waited for")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Command::spawn` that hands back a [`Guard`].
pub trait SpawnGuarded {
    fn spawn_guarded(&mut self) -> Guard;
}

impl SpawnGuarded for Command {
    #[track_caller]
    fn spawn_guarded(&mut self) -> Guard {
        Guard(Some(self.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.get_program()))))
    }
}

/// A finished command and how it was run, so that a failed expectation can say everything
/// (after ripgrep's `tests/util.rs`). It reads as the `Output` it holds.
#[derive(Debug)]
pub struct Ran {
    pub output: Output,
    /// The program and its arguments, as a shell would show them.
    pub command: String,
    /// The environment the command was given on top of the test's own.
    pub env: Vec<String>,
}

impl Ran {
    pub fn of(cmd: &Command, output: Output) -> Ran {
        let command = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let env = cmd
            .get_envs()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", k.to_string_lossy(), v.to_string_lossy()),
                None => format!("{} (removed)", k.to_string_lossy()),
            })
            .collect();
        Ran { output, command, env }
    }
}

impl std::ops::Deref for Ran {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.output
    }
}

/// What a command's run can tell about itself: its output, and how it was run when known.
pub trait Outcome {
    fn output(&self) -> &Output;
    fn how(&self) -> String {
        "(a command run directly)".into()
    }
}

impl<T: Outcome + ?Sized> Outcome for &T {
    fn output(&self) -> &Output {
        (**self).output()
    }
    fn how(&self) -> String {
        (**self).how()
    }
}

impl Outcome for Output {
    fn output(&self) -> &Output {
        self
    }
}

impl Outcome for Ran {
    fn output(&self) -> &Output {
        &self.output
    }
    fn how(&self) -> String {
        format!(
            "command: {}\nenvironment: {}",
            self.command,
            if self.env.is_empty() { "-".into() } else { self.env.join(" ") }
        )
    }
}

/// Asserts that a command exited with `code`; on failure prints why it was expected, the
/// command, its environment, the exit status, stdout and stderr.
#[track_caller]
pub fn assert_exit(ran: &impl Outcome, code: i32, why: &str) {
    let out = ran.output();
    if out.status.code() != Some(code) {
        panic!(
            "expected exit {code}{}, got {:?}\n{}\n--- stdout\n{}\n--- stderr\n{}",
            if why.is_empty() { String::new() } else { format!(" ({why})") },
            out.status,
            ran.how(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a check of [`wait_for`] gives back: the value once the condition holds, else what it saw.
pub trait Poll<T> {
    fn into_result(self) -> Result<T, String>;
}

impl<T> Poll<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet (the check found nothing to report)".into())
    }
}

impl<T, E: std::fmt::Debug> Poll<T> for Result<T, E> {
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// A check's answer: `value` when `ok`, else what was `seen` (printed if the wait runs out).
pub fn check<T>(seen: impl std::fmt::Display, ok: bool, value: T) -> Result<T, String> {
    if ok {
        Ok(value)
    } else {
        Err(seen.to_string())
    }
}

/// Polls `f` every 50 ms until it gives a value; after `limit`, fails with the last thing it saw.
#[track_caller]
pub fn wait_for<T, P: Poll<T>>(limit: Duration, mut f: impl FnMut() -> P) -> T {
    let start = Instant::now();
    loop {
        match f().into_result() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= limit => {
                panic!("condition not reached within {limit:?}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The sandbox's record of `request_pk`.
pub fn request<'a>(records: &'a Value, request_pk: &str) -> &'a Value {
    records["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_pk"].as_u64().map(|n| n.to_string()).as_deref() == Some(request_pk))
        .unwrap_or_else(|| panic!("no request {request_pk} in {records}"))
}

/// Asserts that the sandbox holds exactly the files of `dir` for `request_pk`, each sent once.
pub fn assert_arrived_once(records: &Value, request_pk: &str, dir: &Path) {
    let r = request(records, request_pk);
    assert_eq!(r["evidences_uploads"], 1, "{r}");
    assert_eq!(r["video_uploads"], 1, "{r}");
    assert_arrived(records, request_pk, dir);
}

/// Asserts that `request_pk` reached VIDEOREVIEW holding exactly the files of `dir` (sent at
/// least once).
pub fn assert_arrived(records: &Value, request_pk: &str, dir: &Path) {
    let r = request(records, request_pk);
    assert_eq!(r["status"], "VIDEOREVIEW", "{r}");
    for (slot, file) in [
        ("document_front", "front.jpg"),
        ("document_rear", "rear.jpg"),
        ("document_photo", "photo.jpg"),
        ("document_owner", "selfie.jpg"),
    ] {
        // Images leave without metadata or trailing bytes: what arrives is the cleaned file.
        let cleaned = kiosk_agent::evidence::media::strip_jpeg(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        assert_eq!(r["images"][slot]["sha256"], hex::encode(Sha256::digest(&cleaned)), "{slot} of {request_pk}");
    }
    assert_eq!(r["video"]["sha256"], sha256_file(&dir.join("video.mp4")));
}

/// Whether the tests run as root (mounts, namespaces, other users' files).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The program `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

pub fn have(name: &str) -> bool {
    which(name).is_some()
}

/// Runs `cmd` to its end under GNU time and returns what it did with its own peak resident
/// memory in bytes, as the kernel accounted it for that process (`ru_maxrss` of `wait4`): a
/// bound on memory is checked against the process itself, not against a sample of it.
pub fn run_measuring_peak(cmd: &Command) -> (Ran, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("maxrss");
    let output = measured(cmd, &report)
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/time (scripts/setup-debian test): {e}"));
    (Ran::of(cmd, output), peak_reported(&report, cmd))
}

/// `cmd` run under GNU time, which writes the peak RSS it reaches (KiB) to `report`.
pub fn measured(cmd: &Command, report: &Path) -> Command {
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-f").arg("%M").arg("-o").arg(report).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    timed
}

/// The peak RSS (bytes) GNU time wrote to `report` for `cmd`.
pub fn peak_reported(report: &Path, cmd: &Command) -> u64 {
    let kib: u64 = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("GNU time wrote no peak for {:?}", cmd.get_program()));
    kib * 1024
}

/// Runs `cmd` with the reading end of its stdout closed before it writes anything (`cmd | head`
/// with a reader that left) and checks that it ends quietly: exit 0, nothing on stderr.
#[track_caller]
pub fn assert_quiet_on_a_closed_pipe(cmd: &mut Command, what: &str) {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn_guarded();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 0, &format!("{what}: {stderr}"));
    assert!(stderr.is_empty(), "{what} is quiet: {stderr}");
}
