//! The wire is not trusted: a server that redirects, answers without end, or sends an id that
//! is not a number, and proxies in the environment, against the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::util::*;

/// A raw HTTP server on loopback that records each request line and answers with `respond`.
struct Canned {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    fn start(respond: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (record, respond) = (Arc::clone(&hits), Arc::new(respond));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (record, respond) = (Arc::clone(&record), Arc::clone(&respond));
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    record.lock().unwrap().push(line.trim().to_owned());
                    respond(line.trim(), &mut stream);
                });
            }
        });
        Canned { port, hits }
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn answer(stream: &mut TcpStream, status: &str, headers: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// One enrollment against `server`, one `sync --once`; returns the enrollment as shown.
fn enroll_and_sync(port: u16) -> (Env, serde_json::Value, String) {
    let env = Env::new(port);
    let id = env.enroll(&env.manifest("m", "hostile", |_| {}));
    let out = env.run(&["sync", "--once"]);
    assert_exit(&out, 3, "");
    let shown = env.show(&id);
    (env, shown, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_redirect_is_never_followed_and_names_its_location() {
    let elsewhere = Canned::start(|_, s| answer(s, "200 OK", "", "{}"));
    let location = format!("http://127.0.0.1:{}/steal", elsewhere.port);
    let server =
        Canned::start(move |_, s| answer(s, "307 Temporary Redirect", &format!("Location: {location}\r\n"), ""));
    let (_env, shown, _) = enroll_and_sync(server.port);
    assert_eq!(shown["state"], "failed", "{shown}");
    let reason = shown["last_error"].as_str().unwrap();
    assert!(reason.contains("redirect") && reason.contains(&format!("127.0.0.1:{}/steal", elsewhere.port)), "{reason}");
    assert_eq!(elsewhere.hits(), Vec::<String>::new(), "the create body (with the billing password) went nowhere else");
    assert_eq!(server.hits().len(), 1);
}

#[test]
fn an_endless_answer_is_cut_at_one_mebibyte() {
    let server = Canned::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[");
        let chunk = vec![b' '; 64 * 1024];
        // Until the client hangs up (8 GiB at most).
        for _ in 0..(8u64 << 30) / chunk.len() as u64 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (_env, shown, _) = enroll_and_sync(server.port);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["last_error"].as_str().unwrap().contains("larger than 1024 KiB"), "{shown}");
}

#[test]
fn an_id_that_is_not_digits_never_reaches_a_path() {
    let server = Canned::start(|_, s| {
        let body = json!({"status": "success", "message": "VideoID created",
                          "detail": {"request_pk": "../../hello?x=", "videoid_pk": 7}})
        .to_string();
        answer(s, "200 OK", "Content-Type: application/json\r\n", &body)
    });
    let (_env, shown, _) = enroll_and_sync(server.port);
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(shown["last_error"].as_str().unwrap().contains("not 1 to 19 digits"), "{shown}");
    assert!(shown["request_pk"].is_null());
    assert_eq!(server.hits(), vec!["POST /oneshot/api/v1/videoid HTTP/1.1".to_owned()]);
}

#[test]
fn proxies_from_the_environment_are_ignored() {
    let proxy = Canned::start(|_, s| answer(s, "502 Bad Gateway", "", ""));
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let id = env.enroll(&env.manifest("m", "proxy", |_| {}));
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let out = env
        .cmd()
        .args(["sync", "--once"])
        .env("HTTP_PROXY", &url)
        .env("http_proxy", &url)
        .env("HTTPS_PROXY", &url)
        .env("ALL_PROXY", &url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert_exit(&out, 0, "");
    assert_eq!(env.show(&id)["state"], "in_review");
    assert_eq!(proxy.hits(), Vec::<String>::new());
}

/// Runs `cmd` for at most `limit`; `None` if it was still running then (it is killed).
fn run_within(cmd: &mut std::process::Command, limit: std::time::Duration) -> Option<std::process::Output> {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn_guarded();
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Every file the configuration names (and the configuration itself) may be a FIFO nobody
/// writes to, or `/dev/zero`: each is refused at once, naming the file, never read without end
/// or waited on for ever.
#[test]
fn fifos_and_endless_devices_as_configured_files_are_refused_at_once() {
    let env = Env::new(free_port());
    let fifo = env.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg("-m").arg("600").arg(&fifo).status().unwrap();
    assert!(made.success());
    let data = env.data_dir();
    let mut highest = 0;
    for target in [fifo.to_str().unwrap(), "/dev/zero"] {
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("the configuration", String::new(), vec!["check-config"]),
            ("oneshot.ca_bundle", format!("ca_bundle = \"{target}\"\n"), vec!["check-config"]),
            (
                "oneshot.billing_password_file",
                format!("billing_username = \"b@example.com\"\nbilling_password_file = \"{target}\"\n"),
                vec!["check-config"],
            ),
            ("rao.token_file", format!("[rao]\nid = \"1\"\ntoken_file = \"{target}\"\n"), vec!["check-config"]),
            ("api.token_file", format!("[api]\ntoken_file = \"{target}\"\n"), vec!["check-config"]),
            ("storage.master_key_file", format!("master_key_file = \"{target}\"\n"), vec!["queue", "list"]),
            ("storage.device_key_file", format!("device_key_file = \"{target}\"\n"), vec!["doctor"]),
        ];
        for (key, setting, args) in cases {
            let original = std::fs::read_to_string(&env.config).unwrap();
            let mut cmd = std::process::Command::new(BIN);
            cmd.env_remove("KIOSK_AGENT_CONFIG").env_remove("CREDENTIALS_DIRECTORY");
            if key == "the configuration" {
                cmd.arg("--config").arg(target);
            } else {
                // Each setting goes into its own section.
                let text = if key.starts_with("oneshot.") {
                    original.replacen("[oneshot]\n", &format!("[oneshot]\n{setting}"), 1)
                } else if key.starts_with("storage.") {
                    original.replacen("[storage]\n", &format!("[storage]\n{setting}"), 1)
                } else if key.starts_with("api.") {
                    original.replacen("[api]\n", &format!("[api]\n{}", setting.trim_start_matches("[api]\n")), 1)
                } else {
                    format!("{original}{setting}")
                };
                std::fs::write(&env.config, text).unwrap();
                cmd.arg("--config").arg(&env.config);
            }
            cmd.args(&args);
            let report = env.dir.path().join("maxrss");
            let out = run_within(&mut measured(&cmd, &report), std::time::Duration::from_secs(20));
            std::fs::write(&env.config, &original).unwrap();
            let out = out.unwrap_or_else(|| panic!("{key} = {target}: {args:?} hung"));
            let peak = peak_reported(&report, &cmd);
            assert!(peak <= 256 << 20, "{key} = {target}: peak RSS {} MiB", peak >> 20);
            highest = highest.max(peak);
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_ne!(out.status.code(), Some(0), "{key} = {target}: {args:?} succeeded: {said}");
            assert!(out.status.code().is_some(), "{key} = {target}: killed by a signal: {said}");
            assert!(said.contains(target), "{key} = {target}: the file is not named: {said}");
        }
    }
    println!("FIFOs and /dev/zero as configured files: 14 cases, highest peak RSS {} MiB", highest >> 20);
    assert!(data.exists());
}

/// A flood of idle connections cannot starve the daemon of descriptors: with its descriptor
/// limit at 400 (the hard limit too, set by `prlimit`), 600 idle connections to the webhook
/// port are held off (at most 128 served at once, the rest wait in the kernel's backlog), an
/// enrollment queued meanwhile is delivered, not failed as unreadable, and the idle
/// connections are closed once they have sent no header for the header timeout.
#[test]
fn idle_connections_cannot_exhaust_the_daemons_descriptors() {
    let sandbox = Sandbox::start(0);
    let hook_port = free_port();
    let env =
        Env::with_config(sandbox.addr.port(), "current", &format!("webhook_listen = \"127.0.0.1:{hook_port}\"\n"));
    let log = std::fs::File::create(env.dir.path().join("daemon.log")).unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=400:400").arg(BIN).arg("--config").arg(&env.config).arg("run");
    cmd.env_remove("KIOSK_AGENT_CONFIG").env_remove("CREDENTIALS_DIRECTORY");
    let daemon = cmd.stdout(std::process::Stdio::null()).stderr(log).spawn_guarded();
    let pid = daemon.id();
    wait_for(std::time::Duration::from_secs(20), || {
        let up = TcpStream::connect(("127.0.0.1", hook_port)).is_ok();
        check(format!("webhook port open: {up}"), up, ())
    });
    let mut idle = Vec::new();
    for _ in 0..600 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], hook_port));
        if let Ok(stream) = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            idle.push(stream);
        }
    }
    assert!(idle.len() > 400, "only {} connections were made", idle.len());
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let held = fds();
    assert!(held < 400 - 100, "the daemon holds {held} descriptors with {} idle connections", idle.len());
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    wait_for(std::time::Duration::from_secs(60), || {
        let state = env.show(&id)["state"].clone();
        check(state.clone(), state == "in_review", ())
    });
    // The header timeout: the connections the daemon accepted are closed from its side.
    let accepted = &mut idle[0];
    accepted.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 1];
    let started = std::time::Instant::now();
    let read = accepted.read(&mut buf);
    assert!(matches!(read, Ok(0)), "an idle connection is closed by the daemon: {read:?}");
    println!(
        "{} idle connections: the daemon held {held} descriptors; the first idle one was closed after {:?}",
        idle.len(),
        started.elapsed()
    );
    drop(daemon);
}
