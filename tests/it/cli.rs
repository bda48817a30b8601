//! `demo`, `check-config` and the CLI's exit codes.

use std::process::Command;
use std::time::Duration;

use crate::util::*;

#[test]
fn demo_runs_on_embedded_defaults() {
    demo_passes(&[], "new Optimizer (/oneshot/api/v1)");
}

#[test]
fn demo_runs_against_the_old_optimizer() {
    demo_passes(&["--layout", "legacy"], "old Optimizer (/api/v1)");
}

/// `--full` goes on to a signed document, in both generations.
#[test]
fn demo_full_signs_a_document_in_both_generations() {
    for (layout, generation) in [("current", "new Optimizer"), ("legacy", "old Optimizer")] {
        let stdout = demo_passes(&["--full", "--layout", layout], generation);
        for needle in [
            "approve (RAO token)",
            "ENROLLREADY",
            "service contract",
            "OTP",
            "ISSUED",
            "sign (image, page 0)",
            "differs from the original",
            "deleted on the server",
            "final state signed",
        ] {
            assert!(stdout.contains(needle), "{layout}: missing {needle:?} in:\n{stdout}");
        }
    }
}

fn demo_passes(args: &[&str], generation: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    // From an unrelated directory and without any configuration.
    let out = Command::new(BIN)
        .arg("demo")
        .args(args)
        .current_dir(dir.path())
        .env_remove("KIOSK_AGENT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0, &format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    for needle in [
        "document front   1920x1080",
        "→ pass; auto-captured",
        "out of the 1920x1080 frame at",
        "→ pass",
        "document photo",
        "selfie           1280x720",
        "1280x720 H.264/MP4",
        "request_pk  45836",
        "videoid_pk  137",
        "status      VIDEOREVIEW",
        "arrived byte-identical",
        "upload video",
        generation,
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the demo writes only to its own temp dir");
    stdout.into_owned()
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[oneshot]\nbase_url = \"http://optimizer.example.com/api\"\nlayout = \"v3\"\n[sync]\nconcurrency = 0\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_exit(&out, 2, "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in [
        "oneshot.base_url: must use https",
        "oneshot.layout",
        "oneshot.registration_authority: is required",
        "oneshot.profile",
        "storage.data_dir",
        "sync.concurrency",
    ] {
        assert!(stdout.contains(key), "missing {key:?} in:\n{stdout}");
    }

    let example = samples_dir().parent().unwrap().join("kiosk-agent.example.toml");
    // The example parses; on a machine without its key, the key is the one problem named.
    let out = Command::new(BIN).arg("check-config").env("KIOSK_AGENT_CONFIG", &example).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = stdout.lines().collect();
    if std::path::Path::new("/var/lib/kiosk-agent/master.key").exists() {
        assert_exit(&out, 0, &stdout);
    } else {
        assert_exit(&out, 2, &stdout);
        assert_eq!(problems.len(), 1, "{stdout}");
        assert!(problems[0].starts_with("storage.master_key_file:") && problems[0].contains("key init"), "{stdout}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new(free_port());
    assert_exit(&env.run(&["sync"]), 2, "");
    assert_exit(&env.run(&["queue", "show", "no-such-id"]), 2, "");
    let out = Command::new(BIN).args(["enroll", "x.json"]).env_remove("KIOSK_AGENT_CONFIG").output().unwrap();
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn capture_commands_name_a_missing_helper() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("kiosk-agent");
    std::fs::copy(BIN, &lone).unwrap();
    let out = Command::new(&lone).arg("cameras").output().unwrap();
    assert_exit(&out, 1, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kiosk-agent-capture not found"), "{stderr}");
}

#[test]
fn a_second_sync_beside_a_running_daemon_exits_3_saying_why() {
    let env = Env::new(free_port());
    // On a fixed API address, as installed: the batch run must not try to take it.
    let api = free_port();
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{api}\""));
    std::fs::write(&env.config, text).unwrap();
    let mut daemon =
        env.cmd().arg("run").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn_guarded();
    wait_for(std::time::Duration::from_secs(10), || env.data_dir().join("wake.sock").exists().then_some(()));
    let out = env.run(&["sync", "--once"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_exit(&out, 3, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("another worker is running"));
}

/// Every command and every argument explains itself in `--help`.
#[test]
fn every_subcommand_and_argument_has_help() {
    use clap::CommandFactory as _;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() && sub.get_name() != "help" {
                missing.push(name.clone());
            }
            walk(sub, &name, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&kiosk_agent::cli::Cli::command(), "kiosk-agent", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}

/// `log.format = "json"` (or `KIOSK_AGENT_LOG_FORMAT=json`): one JSON object per line, the
/// enrollment id and state as fields of their own, no colour codes.
#[test]
fn logs_can_be_json_lines_without_colours() {
    let sandbox = Sandbox::start(0);
    for (extra, env_format) in [("[log]\nformat = \"json\"\n", None), ("", Some("json"))] {
        let env = Env::with_config(sandbox.addr.port(), "current", extra);
        let id = env.enroll(&env.manifest("m", extra, |_| {}));
        let mut cmd = env.cmd();
        cmd.args(["sync", "--once"]).env("KIOSK_AGENT_LOG", "info").env_remove("KIOSK_AGENT_LOG_FORMAT");
        if let Some(f) = env_format {
            cmd.env("KIOSK_AGENT_LOG_FORMAT", f);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_exit(&out, 0, &stderr);
        let events: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .collect();
        assert!(events.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()), "{stderr}");
        assert!(
            events.iter().any(|v| v["enrollment_id"] == id.as_str() && v["state"] == "in_review"),
            "the state change names the enrollment and its state: {stderr}"
        );
        assert!(!stderr.contains('\u{1b}'), "no ANSI escape codes when stderr is not a terminal");
    }
}

/// Looking never creates: `queue list`, `queue show` and `check-config` on a fresh install leave
/// no data directory, key or database behind.
#[test]
fn read_only_commands_create_nothing() {
    // After `key init`, before the first enrollment: only the keys exist.
    let env = Env::new(free_port());
    let db = env.data_dir().join("queue.db");
    assert!(!db.exists());
    let out = env.run(&["queue", "list", "--json"]);
    assert_exit(&out, 0, "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert_exit(&env.run(&["queue", "list"]), 0, "");
    assert_exit(&env.run(&["queue", "show", "x"]), 2, "");
    let _ = env.run(&["check-config"]);
    let _ = env.run(&["doctor"]);
    assert!(!db.exists(), "no database was created");
    // Before `key init`: no key is created either, and the commands say where they looked.
    std::fs::remove_dir_all(env.data_dir()).unwrap();
    let out = env.run(&["queue", "list"]);
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("key init"));
    assert!(!env.data_dir().exists(), "nothing was created");
}

#[test]
fn queue_list_filters_and_hides_what_is_done() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let done = env.enroll(&env.manifest("a", "1", |_| {}));
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    let pending = env.enroll(&env.manifest("b", "2", |_| {}));
    let text = |args: &[&str]| String::from_utf8_lossy(&env.run(args).stdout).into_owned();
    let list = text(&["queue", "list"]);
    assert!(list.contains(&pending) && !list.contains(&done), "completed rows are hidden: {list}");
    assert!(list.contains("VIDEOID") && list.contains("NEXT ATTEMPT") && list.contains("1 completed"), "{list}");
    assert!(text(&["queue", "list", "--all"]).contains(&done));
    let in_review = text(&["queue", "list", "--state", "in_review"]);
    assert!(in_review.contains(&done) && !in_review.contains(&pending), "{in_review}");
    let json: serde_json::Value =
        serde_json::from_str(&text(&["queue", "list", "--json", "--state", "queued"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert!(json[0]["request_pk"].is_null(), "not created yet: {json}");
    let json: serde_json::Value =
        serde_json::from_str(&text(&["queue", "list", "--json", "--state", "in_review"])).unwrap();
    assert!(
        json[0]["request_pk"].is_u64() && json[0]["videoid_pk"].is_u64(),
        "keys are numbers, as the server sends them: {json}"
    );
    let out = env.run(&["queue", "list", "--state", "flying"]);
    assert_exit(&out, 2, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state: must be one of"));
}

/// `queue list | head`: a reader that goes away early ends the command quietly (exit 0, nothing
/// on stderr), for every command that prints a report.
#[test]
fn a_closed_pipe_ends_a_report_quietly() {
    let env = Env::new(free_port());
    let id = env.enroll(&env.manifest("a", "1", |_| {}));
    for args in [
        &["queue", "list", "--all"][..],
        &["queue", "list", "--json"],
        &["queue", "show", &id],
        &["queue", "salvage"],
        &["audit", "export"],
        &["audit", "verify"],
        &["doctor"],
        &["check-config"],
    ] {
        assert_quiet_on_a_closed_pipe(env.cmd().args(args), &format!("{args:?}"));
    }
}

#[test]
fn doctor_says_what_is_wrong_and_what_to_do() {
    let sandbox = Sandbox::start(0);
    let env = Env::with_config(sandbox.addr.port(), "current", "");
    let cams = "[cameras.document]\nsource = \"synthetic\"\n[cameras.face]\nsource = \"synthetic\"\n";
    let text = std::fs::read_to_string(&env.config).unwrap() + cams;
    std::fs::write(&env.config, text).unwrap();
    env.enroll(&env.manifest("m", "", |_| {}));
    let out = env.run(&["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0, &format!("all is well:\n{report}"));
    for what in
        ["master key", "device key", "data directory", "queue", "audit trail", "camera document", "server", "clock"]
    {
        assert!(report.lines().any(|l| l.starts_with("ok") && l.contains(what)), "no ok line for {what}:\n{report}");
    }
    assert!(
        report.lines().any(|l| l.starts_with("ok") && l.contains("layout") && l.contains("as configured")),
        "{report}"
    );

    // A layout that disagrees with the server at base_url: a warning saying which to set.
    let legacy = std::fs::read_to_string(&env.config).unwrap().replace("layout = \"current\"", "layout = \"legacy\"");
    let wrong = env.dir.path().join("wrong-layout.toml");
    std::fs::write(&wrong, legacy).unwrap();
    let report =
        String::from_utf8_lossy(&Command::new(BIN).arg("--config").arg(&wrong).arg("doctor").output().unwrap().stdout)
            .into_owned();
    assert!(
        report.lines().any(|l| l.starts_with("WARN")
            && l.contains("layout")
            && l.contains("new Optimizer")
            && l.contains("\"current\"")),
        "{report}"
    );

    // A clock 400 days behind (a kiosk booted without its real-time clock): it reads before
    // this build was made, and 400 days from the server's Date; warnings saying what to do.
    let out =
        env.cmd().env("KIOSK_AGENT_TEST_WALL_OFFSET_SECS", (-400 * 86_400).to_string()).arg("doctor").output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1, &report);
    let clock: Vec<&str> = report.lines().filter(|l| l.contains("clock")).collect();
    assert!(
        clock.iter().any(|l| l.starts_with("WARN") && l.contains("before this build") && l.contains("NTP")),
        "{report}"
    );
    assert!(clock.iter().any(|l| l.starts_with("WARN") && l.contains("away from the server's")), "{report}");

    // Without the server: a failure naming what to check; exit 2.
    drop(sandbox);
    let out = env.run(&["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 2, &report);
    assert!(
        report.lines().any(|l| l.starts_with("FAIL") && l.contains("server") && l.contains("base_url")),
        "{report}"
    );

    // A missing camera device is a warning with the fix; nothing is created by looking.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("source = \"synthetic\"\n[cameras.face]", "source = \"v4l2:/dev/video9\"\n[cameras.face]");
    std::fs::write(&env.config, text).unwrap();
    let before: Vec<_> = std::fs::read_dir(env.data_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
    let report = String::from_utf8_lossy(&env.run(&["doctor"]).stdout).into_owned();
    assert!(
        report.lines().any(|l| l.starts_with("WARN") && l.contains("/dev/video9") && l.contains("video group")),
        "{report}"
    );
    let after: Vec<_> = std::fs::read_dir(env.data_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before.len(), after.len(), "doctor creates nothing");
}

/// A loopback https server whose certificate (from a CA of the test's own) ends `not_after`; it
/// answers every request `200` with a `Date`. Returns its port and the CA's PEM.
fn tls_server(not_after: std::time::SystemTime) -> (u16, String) {
    use std::io::{Read, Write};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "kiosk-agent test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = (std::time::SystemTime::now() - Duration::from_secs(30 * 86_400)).into();
    params.not_after = not_after.into();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), stream);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // A client that refuses the certificate ends the handshake here: next connection.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            let _ = write!(tls, "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, ca.pem())
}

/// `doctor` reads the server's certificate: a warning three weeks before it expires, a failure
/// once it has.
#[test]
fn doctor_checks_the_servers_certificate() {
    let in_days = |days: u64| std::time::SystemTime::now() + Duration::from_secs(days * 86_400);
    for (expires, code, needle) in [
        (in_days(400), 0, "ok    tls            certificate valid until"),
        (in_days(10), 1, "WARN  tls            the server's certificate expires in 9 days"),
        (std::time::SystemTime::now() - Duration::from_secs(86_400), 2, "the server's certificate has expired"),
    ] {
        let (port, ca) = tls_server(expires);
        let env = Env::with_config(port, "current", "");
        std::fs::write(env.dir.path().join("ca.pem"), ca).unwrap();
        let text = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("base_url = \"http://127.0.0.1:", "ca_bundle = \"ca.pem\"\nbase_url = \"https://localhost:")
            + "[cameras.document]\nsource = \"synthetic\"\n[cameras.face]\nsource = \"synthetic\"\n";
        std::fs::write(&env.config, text).unwrap();
        let out = env.run(&["doctor"]);
        let report = String::from_utf8_lossy(&out.stdout);
        assert_exit(&out, code, &report);
        assert!(report.contains(needle), "{needle:?} in:\n{report}");
    }
}

/// While the daemon sends a video, `queue list` in another process shows how far it is.
#[test]
fn queue_list_shows_an_upload_in_progress() {
    let sandbox = Sandbox::start(0);
    // A 2 MB video at 500 KiB/s: about four seconds of upload to look at.
    let env = Env::with_config(sandbox.addr.port(), "current", "max_upload_rate = \"500 KiB/s\"\n");
    let id = env.enroll(&env.manifest("m", &"v".repeat(2_000_000), |_| {}));
    let mut daemon =
        env.cmd().arg("run").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn_guarded();
    let progress = wait_for(std::time::Duration::from_secs(30), || {
        let e = env.list().into_iter().find(|e| e["id"] == id.as_str())?;
        let (sent, total) = (e["upload"]["sent"].as_u64()?, e["upload"]["total"].as_u64()?);
        check(format!("{sent} of {total} sent"), sent > 0 && sent < total, (sent, total)).ok()
    });
    assert!(progress.1 > 2_000_000, "{progress:?}");
    let text = String::from_utf8_lossy(&env.run(&["queue", "list"]).stdout).into_owned();
    assert!(text.contains("uploading") && text.contains("% ("), "{text}");
    wait_for(std::time::Duration::from_secs(60), || {
        let e = env.show(&id);
        check(&e["state"], e["state"] == "in_review", ())
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(env.show(&id)["upload"].is_null(), "the progress is cleared when the upload ends");
}

/// Enroll, upload and capture show how far they are: a bar at a terminal, plain lines every two
/// seconds in a log or pipe (none for what ends sooner), and a last line when done.
#[test]
fn long_operations_show_progress() {
    let sandbox = Sandbox::start(0);
    // A 2 MB video at 500 KiB/s: about four seconds of upload.
    let env = Env::with_config(sandbox.addr.port(), "current", "max_upload_rate = \"500 KiB/s\"\n");
    let manifest = env.manifest("m", &"v".repeat(2_000_000), |_| {});
    let out = env.run(&["enroll", manifest.to_str().unwrap()]);
    assert_exit(&out, 0, "");
    assert!(out.stderr.is_empty(), "a quick enroll in a log says nothing: {}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(&["sync", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 0, &log);
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("upload ") && l.contains(": video: ")).collect();
    assert!(lines.iter().any(|l| l.contains("% (") && l.ends_with(" MB)")), "{log}");
    assert!(lines.last().is_some_and(|l| l.contains("done in")), "{log}");

    // Capture: lines in a log; a bar (redrawn in place) at a terminal.
    let clip = env.dir.path().join("clip.mp4");
    let out = env.run(&[
        "capture",
        "video",
        "--camera",
        "synthetic:320x240@30",
        "--seconds",
        "3",
        "--out",
        clip.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 0, &log);
    assert!(
        log.lines().any(|l| l.starts_with("capture video: recording: ") && l.contains("% (2.0 of 3.0 s)")),
        "{log}"
    );
    // At a terminal: tests/privileged/terminal.rs (needs script(1)).
}
