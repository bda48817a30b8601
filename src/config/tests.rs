use super::*;

const MINIMAL: &str = r#"
[oneshot]
base_url = "https://optimizer.example.com/oneshot/api/v1"
registration_authority = "139"
profile = "PFnubeQAFCiudadano"
[storage]
data_dir = "/var/lib/kiosk-agent"
"#;

/// The `[oneshot]` section of the smallest valid configuration (for other modules' tests).
pub fn minimal_oneshot() -> OneShotConfig {
    check_ok(MINIMAL).oneshot
}

fn check_ok(text: &str) -> Config {
    build(from_toml(text).expect("parses"), Path::new("/etc/kiosk-agent")).expect("valid")
}

/// Asserts that `text` is rejected with a problem on `key` whose message contains `needle`.
fn check_problem(text: &str, key: &str, needle: &str) {
    let err = from_toml(text).and_then(|raw| build(raw, Path::new("/etc")));
    match err {
        Err(ConfigError::Invalid(problems)) => assert!(
            problems.iter().any(|p| p.key == key && p.message.contains(needle)),
            "expected {key}: …{needle}… in {problems:?}"
        ),
        Err(ConfigError::Parse(msg)) => assert!(msg.contains(key) && msg.contains(needle), "{msg}"),
        other => panic!("expected a problem with {key}, got {other:?}"),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = check_ok(MINIMAL);
    assert_eq!(c.oneshot.generation, Generation::New);
    assert_eq!(c.oneshot.paths.get(Operation::Video), "/videoid/{videoid_pk}/video");
    assert_eq!(c.sync.concurrency.get(), 2);
    assert_eq!(c.sync.backoff_base, Duration::from_secs(2));
    assert_eq!(c.sync.backoff_cap, Duration::from_secs(300));
    assert_eq!(c.storage.master_key_file, PathBuf::from("/var/lib/kiosk-agent/master.key"));
    assert_eq!(c.evidence.max_image_bytes, 10 * 1024 * 1024);
    assert_eq!(c.oneshot.generation, Generation::New);
    assert_eq!((c.oneshot.videoid_mode, c.oneshot.proxy.as_deref()), (None, None));
    assert_eq!(c.sync.max_unknown_status, Duration::from_secs(3600));
    assert_eq!(c.sync.max_server_errors, 5);
    assert_eq!(c.sync.orphan_lookups_per_hour, 60);
    assert_eq!(c.sync.probe_cap, Duration::from_secs(15));
    assert_eq!(c.sync.heartbeat, Some(Duration::from_secs(300)));
}

#[test]
fn protocol_settings_are_checked() {
    let c = check_ok(&MINIMAL.replace(
        "[oneshot]",
        "[oneshot]\nlayout = \"legacy\"\nvideoid_mode = 1\nproxy = \"http://proxy.example:3128\"",
    ));
    assert_eq!(c.oneshot.generation, Generation::Old);
    assert_eq!(c.oneshot.videoid_mode, Some(1));
    let oneshot = |line: &str| MINIMAL.replace("[oneshot]", &format!("[oneshot]\n{line}"));
    let sync = |line: &str| format!("{MINIMAL}[sync]\n{line}\n");
    for (text, key, needle) in [
        (oneshot("videoid_mode = -1"), "oneshot.videoid_mode", "non-negative"),
        (
            MINIMAL.replace("https://optimizer.example.com", "https://user:secret@optimizer.example.com"),
            "oneshot.base_url",
            "user name or password",
        ),
        (oneshot("proxy = \"ftp://p\""), "oneshot.proxy", "http, https or socks5"),
        (oneshot("proxy = \"not a url\""), "oneshot.proxy", "not a URL"),
        (oneshot("min_upload_bytes_per_sec = 0"), "oneshot.min_upload_bytes_per_sec", "greater than 0"),
        (sync("max_server_errors = 0"), "sync.max_server_errors", "at least 1"),
        (sync("orphan_lookups_per_hour = 0"), "sync.orphan_lookups_per_hour", "at least 1"),
        (sync("probe_cap_secs = 0"), "sync.probe_cap_secs", "seconds"),
        (sync("heartbeat_secs = 5"), "sync.heartbeat_secs", "0 (off) or a number of seconds in [10, 86400]"),
        (sync("heartbeat_secs = -1"), "sync.heartbeat_secs", "0 (off)"),
        (sync("max_unknown_status_secs = -5"), "sync.max_unknown_status_secs", "seconds"),
    ] {
        check_problem(&text, key, needle);
    }
    // Uploads get a timeout scaled by their size, between the request timeout and the ceiling.
    let o = check_ok(MINIMAL).oneshot;
    assert_eq!(o.upload_timeout_for(0), o.request_timeout);
    assert_eq!(o.upload_timeout_for(55 * 1024 * 1024), o.request_timeout + Duration::from_secs(880));
    assert_eq!(o.upload_timeout_for(u64::MAX / 2), o.upload_timeout);
}

#[test]
fn legacy_layout_and_path_override() {
    let c = check_ok(&format!("{MINIMAL}\n[oneshot.paths]\nstatus = \"/requests/{{request_pk}}\"\n"));
    assert_eq!(c.oneshot.paths.get(Operation::Status), "/requests/{request_pk}");
    let legacy = MINIMAL.replace("[oneshot]", "[oneshot]\nlayout = \"legacy\"");
    let c = check_ok(&legacy);
    assert_eq!(c.oneshot.paths.get(Operation::Video), "/videoid/{request_pk}/evidences/video");
    assert_eq!(c.oneshot.paths.get(Operation::Evidences), "/videoid/{request_pk}/evidences");
}

#[test]
fn each_rule_names_its_key() {
    let https = MINIMAL.replace("https://optimizer.example.com", "http://optimizer.example.com");
    check_problem(&https, "oneshot.base_url", "must use https");
    let loopback = MINIMAL.replace("https://optimizer.example.com", "http://127.0.0.1:8080");
    assert_eq!(check_ok(&loopback).oneshot.base_url, "http://127.0.0.1:8080/oneshot/api/v1");
    check_problem(
        &MINIMAL.replace("registration_authority = \"139\"", ""),
        "oneshot.registration_authority",
        "required",
    );
    check_problem(
        &MINIMAL.replace("[storage]\ndata_dir = \"/var/lib/kiosk-agent\"", ""),
        "storage.data_dir",
        "required",
    );
    check_problem(
        &MINIMAL.replace("[oneshot]", "[oneshot]\nlayout = \"v2\""),
        "oneshot.layout",
        "\"current\" or \"legacy\"",
    );
    check_problem(&MINIMAL.replace("[oneshot]", "[oneshot]\nenv = \"staging\""), "oneshot.env", "sandbox");
    check_problem(&format!("{MINIMAL}\n[sync]\nconcurrency = 0\n"), "sync.concurrency", "between 1 and 64");
    check_problem(
        &format!("{MINIMAL}\n[evidence]\nmax_image_bytes = 0\n"),
        "evidence.max_image_bytes",
        "greater than 0",
    );
    check_problem(
        &format!("{MINIMAL}\n[oneshot.paths]\nvideo = \"videoid\"\n"),
        "oneshot.paths.video",
        "start with '/'",
    );
    check_problem(
        &format!("{MINIMAL}\n[oneshot.paths]\nvideo = \"/v/{{pk}}\"\n"),
        "oneshot.paths.video",
        "placeholders",
    );
    check_problem(
        &format!("{MINIMAL}\n[oneshot.headers]\n\"Bad Header\" = \"x\"\n"),
        "oneshot.headers.Bad Header",
        "header name",
    );
    check_problem(
        &MINIMAL.replace("[oneshot]", "[oneshot]\nbilling_username = \"b\""),
        "oneshot.billing_username",
        "together",
    );
    check_problem(
        &format!("{MINIMAL}\n[sync]\nbackoff_base_secs = 10\nbackoff_cap_secs = 5\n"),
        "sync.backoff_cap_secs",
        "smaller",
    );
    // Unknown keys are reported by serde with their name.
    check_problem(&format!("{MINIMAL}\n[sync]\nconcurency = 2\n"), "concurency", "unknown field");
}

#[test]
fn every_problem_is_reported_at_once() {
    let Err(ConfigError::Invalid(problems)) = validate(from_toml("").unwrap(), Path::new("/")) else {
        panic!("an empty file must be invalid");
    };
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["oneshot.base_url", "oneshot.registration_authority", "oneshot.profile", "storage.data_dir"]);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
    std::fs::set_permissions(dir.path().join("pw"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = MINIMAL.replace(
        "[oneshot]",
        "[oneshot]\nbilling_username = \"b@example.com\"\nbilling_password_file = \"pw\"\nheaders = { X-Api-Key = \"s3cr3t\" }",
    );
    let c = build(from_toml(&text).unwrap(), dir.path()).unwrap();
    assert_eq!(c.oneshot.billing_password.as_ref().map(|p| p.as_str()), Some("hunter2"));
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("X-Api-Key"));
}

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kiosk-agent.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = build(from_toml(&text).unwrap(), Path::new("/etc/kiosk-agent")).unwrap();
    assert_eq!(c.oneshot.registration_authority, "139");
    assert_eq!(
        c.oneshot.videoid_mode,
        Some(1),
        "the example sends videoid_mode = 1, as the vendor's External-mode example"
    );
}

#[test]
fn capture_sections_have_defaults_and_checked_values() {
    let c = check_ok(MINIMAL);
    assert_eq!(c.capture.document.request, CameraMode { width: 1920, height: 1080, fps: 30 });
    assert_eq!(c.capture.video.preset, "veryfast");
    assert_eq!(c.capture.still.jpeg_quality, 90);
    check_problem(&format!("{MINIMAL}\n[capture]\njpeg_quality = 0\n"), "capture.jpeg_quality", "1-100");
    check_problem(&format!("{MINIMAL}\n[capture.video]\npreset = \"ludicrous\"\n"), "capture.video.preset", "veryfast");
    check_problem(&format!("{MINIMAL}\n[capture.video]\nwidth = 1281\n"), "capture.video.width", "even");
    check_problem(&format!("{MINIMAL}\n[cameras.face]\nsource = \"webcam\"\n"), "cameras.face.source", "v4l2:");
    check_problem(
        &format!("{MINIMAL}\n[cameras.document.quality]\nmax_glare = 2.0\n"),
        "cameras.document.quality.max_glare",
        "0-1",
    );
    // Capture-only files work for `capture` commands without the server settings.
    let only = validate_capture(from_toml("[cameras.face]\nsource = \"synthetic\"\n").unwrap().cameras, None).unwrap();
    assert_eq!(only.face.source, "synthetic");
}

#[test]
fn rao_and_signature_sections_are_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{name}-value\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    secret("token", 0o600);
    secret("pw", 0o600);
    secret("pin", 0o640);
    let with = |extra: &str| build(from_toml(&format!("{MINIMAL}{extra}")).unwrap(), dir.path());
    let c = with("[rao]\nid = \"1400\"\ntoken_file = \"token\"\n").unwrap();
    assert_eq!(c.rao.unwrap().credentials, RaoCredentials::Token("token-value".to_owned().into()));
    for (extra, key, needle) in [
        ("[rao]\ntoken_file = \"token\"\n", "rao.id", "required"),
        ("[rao]\nid = \"1\"\n", "rao.token_file", "either token_file"),
        ("[rao]\nid = \"1\"\ntoken_file = \"token\"\nusername = \"u\"\n", "rao.token_file", "not both"),
        (
            "[rao]\nid = \"1\"\nusername = \"u\"\npassword_file = \"pw\"\npin_file = \"pin\"\n",
            "rao.pin_file",
            "chmod 600",
        ),
        ("[rao]\nid = \"1\"\ntoken_file = \"missing\"\n", "rao.token_file", "cannot read"),
        ("[signature]\nposition = \"1,2,3\"\n", "signature.position", "four numbers"),
        ("[signature]\npage = -2\n", "signature.page", "0 the first"),
    ] {
        match with(extra) {
            Err(ConfigError::Invalid(problems)) => assert!(
                problems.iter().any(|p| p.key == key && p.message.contains(needle)),
                "{extra}: expected {key}: …{needle}… in {problems:?}"
            ),
            other => panic!("{extra}: expected a problem, got {other:?}"),
        }
    }
    // The RAO's secrets never reach a log.
    let c = with("[rao]\nid = \"1400\"\nusername = \"u\"\npassword_file = \"pw\"\npin_file = \"token\"\n").unwrap();
    let shown = format!("{:?}", c.rao);
    assert!(!shown.contains("pw-value") && !shown.contains("token-value"), "{shown}");
}

#[test]
fn a_ca_bundle_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a pem").unwrap();
    let text = MINIMAL.replace("[oneshot]", "[oneshot]\nca_bundle = \"bad.pem\"");
    match build(from_toml(&text).unwrap(), dir.path()) {
        Err(ConfigError::Invalid(p)) => {
            assert!(p.iter().any(|p| p.key == "oneshot.ca_bundle" && p.message.contains("no PEM certificate")), "{p:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn log_format_is_text_json_or_journald() {
    assert_eq!(check_ok(MINIMAL).log_format, super::LogFormat::Text);
    assert_eq!(check_ok(&format!("{MINIMAL}\n[log]\nformat = \"journald\"\n")).log_format, super::LogFormat::Journald);
    check_problem(
        &format!("{MINIMAL}\n[log]\nformat = \"xml\"\n"),
        "log.format",
        "must be \"text\", \"json\" or \"journald\"",
    );
}

#[test]
fn the_log_format_is_read_before_validation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[log]\nformat = \"json\"\n[oneshot]\nbase_url = 3\n").unwrap();
    assert_eq!(super::peek_log_format(&file), super::LogFormat::Json, "an invalid file elsewhere still logs as asked");
    std::fs::write(&file, "not toml [").unwrap();
    assert_eq!(super::peek_log_format(&file), super::LogFormat::Text);
    assert_eq!(super::peek_log_format(&dir.path().join("missing.toml")), super::LogFormat::Text);
}

#[test]
fn only_the_document_camera_is_cut_and_the_format_is_named() {
    use kiosk_common::capture::CardFormat;
    assert_eq!(check_ok(MINIMAL).capture.document.card, None, "the whole frame unless configured");
    let c = check_ok(&format!("{MINIMAL}\n[cameras.document]\ncard = \"td3\"\n"));
    assert_eq!(c.capture.document.card, Some(CardFormat::Td3));
    let c = check_ok(&format!("{MINIMAL}\n[cameras.document]\ncard = \"off\"\n"));
    assert_eq!(c.capture.document.card, None);
    check_problem(&format!("{MINIMAL}\n[cameras.document]\ncard = \"a4\"\n"), "cameras.document.card", "\"id1\"");
    check_problem(
        &format!("{MINIMAL}\n[cameras.face]\ncard = \"id1\"\n"),
        "cameras.face.card",
        "only the document camera",
    );
    let c = check_ok(&format!("{MINIMAL}\n[cameras.document]\ncard = \"id1\"\nkeep_full_frame = true\n"));
    assert!(c.capture.document.keep_full_frame);
    check_problem(
        &format!("{MINIMAL}\n[cameras.document]\nkeep_full_frame = true\n"),
        "cameras.document.keep_full_frame",
        "only with card",
    );
}

#[test]
fn only_the_face_camera_has_a_face_rule() {
    let c = check_ok(&format!("{MINIMAL}\n[cameras.face.quality]\nmin_face_width = 200\n"));
    assert_eq!(c.capture.face.thresholds.min_face_width, Some(200));
    assert_eq!(c.capture.document.thresholds.min_face_width, None);
    assert_eq!(check_ok(MINIMAL).capture.face.thresholds.min_face_width, Some(150));
    check_problem(
        &format!("{MINIMAL}\n[cameras.document.quality]\nmin_face_width = 200\n"),
        "cameras.document.quality.min_face_width",
        "only the face camera",
    );
    check_problem(
        &format!("{MINIMAL}\n[cameras.face.quality]\nmin_face_width = 5\n"),
        "cameras.face.quality.min_face_width",
        "40-4000",
    );
}

#[test]
fn the_api_answers_only_to_names_given_plainly() {
    let c = check_ok(&format!("{MINIMAL}[api]\nallowed_hosts = [\"Kiosk-17.VPN\"]\n"));
    assert_eq!(c.api.allowed_hosts, ["kiosk-17.vpn"]);
    assert_eq!(c.api.token_file, PathBuf::from("/var/lib/kiosk-agent/api.token"), "the default token file");
    for bad in ["*.vpn", "kiosk:8470", "", "a..b", "kiosk_17"] {
        check_problem(
            &format!("{MINIMAL}[api]\nallowed_hosts = [\"{bad}\"]\n"),
            "api.allowed_hosts",
            "not a host name",
        );
    }
    check_problem(&format!("{MINIMAL}[api]\nmax_json_bytes = 0\n"), "api.max_json_bytes", "between 1 and");
}

#[test]
fn validation_touches_no_file_and_the_files_step_reports_each_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace(
        "[oneshot]",
        "[oneshot]\nbilling_username = \"b@example.com\"\nbilling_password_file = \"missing-pw\"\nca_bundle = \"missing.pem\"",
    ) + "[rao]\nid = \"1400\"\ntoken_file = \"missing-token\"\n[api]\ntoken_file = \"missing-api-token\"\n";
    // Nothing named exists, and validation does not notice: it only records what to read.
    let unread = validate(from_toml(&text).unwrap(), dir.path()).expect("valid as written");
    let keys: Vec<&str> = unread.keys().collect();
    assert_eq!(keys, ["oneshot.billing_password_file", "oneshot.ca_bundle", "rao.token_file", "api.token_file"]);
    // Reading them reports every one, with its key and the file.
    match unread.read_files() {
        Err(ConfigError::Invalid(problems)) => {
            for (key, file) in [
                ("oneshot.billing_password_file", "missing-pw"),
                ("oneshot.ca_bundle", "missing.pem"),
                ("rao.token_file", "missing-token"),
                ("api.token_file", "missing-api-token"),
            ] {
                assert!(
                    problems.iter().any(|p| p.key == key && p.message.contains(file)),
                    "expected {key} naming {file} in {problems:?}"
                );
            }
            assert_eq!(problems.len(), 4, "{problems:?}");
        }
        other => panic!("expected the four unreadable files, got {other:?}"),
    }
}

#[test]
fn numbers_that_would_overflow_or_disable_a_bound_are_refused() {
    check_problem(&format!("{MINIMAL}max_retention_days = 200000000000\n"), "storage.max_retention_days", "36500");
    check_problem(&format!("{MINIMAL}max_retention_days = 0\n"), "storage.max_retention_days", "between 1");
    check_problem(
        &format!("{MINIMAL}[evidence]\nmax_image_megapixels = 0\n"),
        "evidence.max_image_megapixels",
        "[0.1, 144]",
    );
    check_problem(
        &format!("{MINIMAL}[evidence]\nmax_image_megapixels = 1e9\n"),
        "evidence.max_image_megapixels",
        "[0.1, 144]",
    );
    assert_eq!(check_ok(MINIMAL).evidence.max_image_pixels, 40_000_000);
    assert_eq!(
        check_ok(&format!("{MINIMAL}[evidence]\nmax_image_megapixels = 12.5\n")).evidence.max_image_pixels,
        12_500_000
    );
}

#[test]
fn the_auto_capture_steady_time_is_milliseconds_within_bounds() {
    use std::time::Duration;
    assert_eq!(check_ok(MINIMAL).capture.still.auto_steady, Duration::from_millis(700));
    let c = check_ok(&format!("{MINIMAL}\n[capture]\nauto_steady_ms = 1200\n"));
    assert_eq!(c.capture.still.auto_steady, Duration::from_millis(1200));
    for bad in ["0", "50", "60000"] {
        check_problem(&format!("{MINIMAL}\n[capture]\nauto_steady_ms = {bad}\n"), "capture.auto_steady_ms", "100-5000");
    }
}
