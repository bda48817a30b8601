//! From VIDEOREVIEW to a signed document, in both generations: approve with the RAO of the
//! configuration, documents queued before approval, the contract, the OTP (with the 412 wait),
//! the signature, retrieval, deletion with backup; the bad input of each step; following reviews
//! in the daemon.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

const LAYOUTS: [&str; 2] = ["current", "legacy"];
/// The sandbox's RAO (the vendor guide's example).
const RAO_TOKEN: &str = "f734066d1ce36f9cae4d55be4cdac50e";

/// A small PDF the test writes itself.
fn pdf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("%PDF-1.4\n% {text}\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n")).unwrap();
    path
}

/// An environment whose `[rao]` uses a 0600 token file, one enrollment delivered to review.
fn reviewed(sandbox: &Sandbox, layout: &str, extra: &str) -> (Env, String) {
    let env = Env::with_config(sandbox.addr.port(), layout, &format!("otp_wait_secs = 1\n{extra}"));
    let token = env.dir.path().join("rao.token");
    std::fs::write(&token, format!("{RAO_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n");
    std::fs::write(&env.config, text).unwrap();
    let id = env.enroll(&env.manifest("m", layout, |_| {}));
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    assert_eq!(env.show(&id)["state"], "in_review");
    (env, id)
}

fn ok(out: &Output) -> String {
    assert_exit(
        &out,
        0,
        &format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_exit(&out, 2, &format!("expected exit 2 with {needle:?}: {err}"));
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn documents(env: &Env, id: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&ok(&env.run(&["document", id, "list", "--json"])))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn otp_of(sandbox: &Sandbox, pk: &str) -> String {
    let (code, body) = http("GET", &sandbox.url(&format!("/_sandbox/requests/{pk}/otp")), None);
    assert_eq!(code, 200, "{body}");
    body["otp"].as_str().unwrap().to_owned()
}

#[test]
fn from_review_to_a_signed_document_in_both_generations() {
    for layout in LAYOUTS {
        let sandbox = Sandbox::start_with(0, &["--otp-interval", "1"]);
        let (env, id) = reviewed(&sandbox, layout, "");
        let pk = env.show(&id)["request_pk"].as_u64().expect("pk is a number").to_string();
        let dir = env.dir.path().to_owned();

        // Queued before approval: durable, no uid yet.
        let doc = pdf(&dir, "contract-to-sign.pdf", layout);
        ok(&env.cmd().args(["document", &id, "upload"]).arg(&doc).output().unwrap());
        let docs = documents(&env, &id);
        assert_eq!(docs, vec![json!({"uid": null, "file": "contract-to-sign.pdf", "state": "queued"})]);

        // Approval moves it to ENROLLREADY and sends the queued document at once.
        let out = ok(&env.run(&["request", &id, "approve"]));
        assert!(out.contains("approved") && out.contains("1 queued document(s) uploaded"), "{layout}: {out}");
        assert_eq!(env.show(&id)["state"], "approved");
        let docs = documents(&env, &id);
        let uid = docs[0]["uid"].as_str().unwrap().to_owned();
        assert_eq!(docs[0]["state"], "uploaded");
        let records = sandbox.records();
        let server_doc = &request(&records, &pk)["documents"][&uid];
        assert_eq!(server_doc["sha256"], sha256_file(&doc), "{layout}: the document arrived byte-identical");

        ok(&env.cmd().args(["document", &id, "contract", "--out"]).arg(dir.join("contract.pdf")).output().unwrap());
        assert!(std::fs::read(dir.join("contract.pdf")).unwrap().starts_with(b"%PDF-"));

        // The OTP; asking again within the server's minute waits and asks once more.
        ok(&env.run(&["otp", &id]));
        let out = env.cmd().args(["otp", &id, "--whatsapp"]).env("KIOSK_AGENT_LOG", "info").output().unwrap();
        ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("less than a minute ago; waiting"),
            "{layout}: the 412 was met"
        );
        assert_eq!(request(&sandbox.records(), &pk)["otps_sent"], 2);
        let code = otp_of(&sandbox, &pk);

        // A wrong code is refused by the server: exit 2, nothing changed.
        let wrong = if code == "000000" { "111111" } else { "000000" };
        refused(&env.sign(&id, wrong), "Confirmation Code invalid");
        assert_eq!(env.show(&id)["state"], "approved");

        let out = ok(&env.sign(&id, &code));
        // The RA's word after a signature: the certificate is ISSUED; locally, signed.
        assert!(out.contains("signed (ISSUED)"), "{out}");
        assert_eq!(env.show(&id)["state"], "signed", "{layout}");
        let signed = dir.join("signed.pdf");
        ok(&env.cmd().args(["document", &id, "signed", &uid, "--out"]).arg(&signed).output().unwrap());
        let signed_bytes = std::fs::read(&signed).unwrap();
        assert!(signed_bytes.starts_with(b"%PDF-") && signed_bytes != std::fs::read(&doc).unwrap());

        // Deleting backs both copies up first, then deletes the document and its signed copy
        // on the server (the old generation deletes one copy a call: both calls are made).
        ok(&env.run(&["document", &id, "delete", &uid]));
        let left = request(&sandbox.records(), &pk)["documents"].clone();
        assert!(left.as_object().is_some_and(|d| d.is_empty()), "{layout}: nothing left on the server: {left}");
        let backup = env.data_dir().join("document-backup").join(&pk);
        // Sealed under the master key: no file there holds a PDF in clear; read back, both are
        // the documents.
        for entry in std::fs::read_dir(&backup).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(!bytes.windows(5).any(|w| w == b"%PDF-"), "{} holds a PDF in clear", entry.path().display());
        }
        let read_back = |extra: &[&str]| {
            let out = dir.join("back.pdf");
            let mut args = vec!["document", &id, "backup", &uid, "--out", out.to_str().unwrap()];
            args.extend_from_slice(extra);
            ok(&env.run(&args));
            std::fs::read(&out).unwrap()
        };
        assert_eq!(read_back(&["--original"]), std::fs::read(&doc).unwrap());
        assert_eq!(read_back(&[]), signed_bytes);
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(request(&sandbox.records(), &pk)["documents"], json!({}));
        assert_eq!(documents(&env, &id)[0]["state"], "deleted");
    }
}

#[test]
fn bad_steps_are_refused_with_the_cause_and_change_nothing() {
    for layout in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let (env, id) = reviewed(&sandbox, layout, "");
        let dir = env.dir.path().to_owned();
        // Before approval: no OTP, no signature.
        refused(&env.run(&["otp", &id]), "not ready for this step");
        refused(&env.sign(&id, "123456"), "not ready for this step");
        // A document that is not a PDF: named, nothing queued.
        let txt = dir.join("notes.txt");
        std::fs::write(&txt, "hello").unwrap();
        let out = env.cmd().args(["document", &id, "upload"]).arg(pdf(&dir, "ok.pdf", "x")).arg(&txt).output().unwrap();
        refused(&out, "notes.txt: is not a PDF");
        assert!(documents(&env, &id).is_empty(), "{layout}: nothing queued");
        // An unknown uid.
        refused(
            &env.run(&["document", &id, "signed", "0f0f0f0f-0000-4000-8000-000000000000", "--out", "x.pdf"]),
            "has no document",
        );
        refused(&env.run(&["document", &id, "signed", "../../etc", "--out", "x.pdf"]), "not a document uid");
        // Refuse needs a reason; then the request is ended and approving it is refused.
        refused(&env.run(&["request", &id, "refuse", "--reason", " "]), "--reason");
        ok(&env.run(&["request", &id, "refuse", "--reason", "document photo does not match"]));
        assert_eq!(env.show(&id)["state"], "refused", "{layout}");
        refused(&env.run(&["request", &id, "approve"]), "needs VIDEOREVIEW");
        assert_eq!(env.show(&id)["state"], "refused");
    }
}

#[test]
fn approving_needs_a_request_in_review_and_a_rao() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let id = env.enroll(&env.manifest("m", "early", |_| {}));
    // Not created yet.
    refused(&env.run(&["request", &id, "approve"]), "no request on the server yet");
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    refused(&env.run(&["request", &id, "approve"]), "no [rao]");
    // A token file others can read is refused by the configuration check.
    let token = env.dir.path().join("rao.token");
    std::fs::write(&token, RAO_TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n");
    std::fs::write(&env.config, &text).unwrap();
    refused(&env.run(&["request", &id, "approve"]), "rao.token_file");
    // Through $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) the file is the unit's.
    let creds = env.dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("rao.token"), "wrong-token").unwrap();
    let out = env.cmd().args(["request", &id, "approve"]).env("CREDENTIALS_DIRECTORY", &creds).output().unwrap();
    refused(&out, "Invalid RAO credentials");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(env.show(&id)["state"], "in_review", "a refused approval changes nothing");
}

/// The daemon follows requests in review: an approval on the server reaches the kiosk on the
/// next review read, queued documents go out, and the evidence is erased when the policy says
/// "approved"; a request left in review stops being read after `sync.review_follow_days`.
#[test]
fn the_daemon_follows_reviews_and_sends_documents_when_approved() {
    for layout in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let env = Env::with_config(sandbox.addr.port(), layout, "");
        let text = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[storage]\n", "[storage]\nerase_after = \"approved\"\n");
        std::fs::write(
            &env.config,
            text.replace("[sync]\n", "[sync]\nreview_poll_secs = 0.2\nreview_follow_days = 0.00003\n"),
        )
        .unwrap();
        let approved = env.enroll(&env.manifest("a", "approved", |m| m["customer"]["email"] = json!("a@example.com")));
        let ignored = env.enroll(&env.manifest("b", "ignored", |m| m["customer"]["email"] = json!("b@example.com")));
        let log = std::fs::File::create(env.dir.path().join("daemon.log")).unwrap();
        let mut daemon = env.cmd().arg("run").stdout(Stdio::null()).stderr(log).spawn_guarded();
        wait_for(Duration::from_secs(30), || {
            let list = env.list();
            let states: Vec<_> = list.iter().map(|e| e["state"].to_string()).collect();
            check(states.join(" "), list.iter().all(|e| e["state"] == "in_review"), ())
        });
        assert_eq!(env.show(&approved)["erased"], false, "{layout}: kept until approval");
        ok(&env
            .cmd()
            .args(["document", &approved, "upload"])
            .arg(pdf(env.dir.path(), "d.pdf", "follow"))
            .output()
            .unwrap());
        let pk = env.show(&approved)["request_pk"].as_u64().expect("pk is a number").to_string();
        set_status(&sandbox, &pk, "ENROLLREADY");
        wait_for(Duration::from_secs(30), || {
            let d = documents(&env, &approved);
            check(&d[0]["state"], d[0]["state"] == "uploaded", ())
        });
        let shown = env.show(&approved);
        assert_eq!(
            (shown["state"].as_str(), shown["erased"].as_bool()),
            (Some("approved"), Some(true)),
            "{layout}: {shown}"
        );
        // The other one is read for about 2.6 s, then left alone.
        wait_for(Duration::from_secs(30), || {
            env.show(&ignored)["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "review_unfollowed")
                .then_some(())
        });
        let _ = daemon.kill();
        let _ = daemon.wait();
        assert_eq!(env.show(&ignored)["state"], "in_review");
    }
}

/// Server text in the review and signing phase (the evidence, and with it the customer's
/// values, may already be erased) reaches the terminal and the log without an email address or
/// a phone number, however the server wrote them.
#[test]
fn server_words_after_review_are_redacted_too() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let manifest: Value = serde_json::from_slice(&std::fs::read(samples_dir().join("manifest.json")).unwrap()).unwrap();
    let customer = manifest["customer"]["email"].as_str().unwrap().to_owned();
    let echoed = "RA refused: customer ANA.GARCIA%40EXAMPLE.COM, phone +34 699 12 34 56, contact \\u0061na@example.com";
    refuse(&sandbox, "approve", &customer, 409, echoed);
    let out = env.cmd().args(["request", &id, "approve"]).env("KIOSK_AGENT_LOG", "debug").output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("RA refused") && said.contains("[redacted]"), "{said}");
    for leaked in ["ANA.GARCIA", "EXAMPLE.COM", "699 12 34 56", "na@example.com"] {
        assert!(!said.contains(leaked), "{leaked} in: {said}");
    }
}

/// Flow commands act on this kiosk's enrollments by their id (a request pk only with `--pk`,
/// on purpose), and secrets (the OTP, an external unlock value) come from stdin, never from the
/// command line where every local user can read them.
#[test]
fn flow_commands_take_enrollment_ids_and_secrets_from_stdin() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let pk = env.show(&id)["request_pk"].as_u64().expect("pk is a number").to_string();
    refused(&env.run(&["request", &pk, "status"]), "--pk");
    refused(&env.run(&["otp", &pk]), "--pk");
    assert!(ok(&env.run(&["request", "--pk", &pk, "status"])).contains("VIDEOREVIEW"));
    assert!(ok(&env.run(&["request", &id, "status"])).contains("VIDEOREVIEW"));
    refused(&env.run(&["request", "--pk", &id, "status"]), "not a request pk");
    refused(&env.run_with_stdin(&["sign", &id, "--otp", "123456"], ""), "--otp: a secret on the command line");
    refused(
        &env.run_with_stdin(&["sign", &id, "--ext-unlock-type", "pin", "--ext-unlock-value", "1"], ""),
        "--ext-unlock-value: a secret on the command line",
    );
    refused(&env.run_with_stdin(&["sign", &id], "\n"), "must not be empty");
    // Read from stdin, the code reaches the server (which refuses it: the request is in review).
    refused(&env.sign(&id, "123456"), "not ready for this step");
    assert_eq!(env.show(&id)["state"], "in_review", "nothing changed");
}

/// A network loss in the middle of a step: exit 1, nothing changed locally, and the CLI says
/// whether the step can simply be repeated: an OTP request that failed can; a signature whose
/// answer was lost may have gone through, so the CLI says to check the status first.
#[test]
fn a_network_loss_says_whether_the_step_can_be_repeated() {
    let sandbox = Sandbox::start_with(0, &["--otp-interval", "0"]);
    let (env, id) = reviewed(&sandbox, "current", "");
    ok(&env.run(&["request", &id, "approve"]));
    ok(&env.cmd().args(["document", &id, "upload"]).arg(pdf(env.dir.path(), "n.pdf", "network")).output().unwrap());
    let pk = env.show(&id)["request_pk"].as_u64().expect("pk is a number").to_string();
    let faults = |spec: &str| assert_eq!(http_raw("POST", &sandbox.url("/_sandbox/faults"), spec.as_bytes()).0, 200);
    // `stdin`: what the command reads there (`sign` its OTP).
    let fails = |args: &[&str], stdin: &str, advice: &str| {
        let out = env.run_with_stdin(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_exit(&out, 1, &format!("{args:?}: {err}"));
        assert!(err.contains(advice), "{args:?}: {err}");
        assert_eq!(env.show(&id)["state"], "approved", "nothing changed locally");
    };
    faults("otp:503=1;retry_after=0");
    fails(&["otp", &id], "", "can be repeated safely");
    faults("");
    ok(&env.run(&["otp", &id]));
    let code = otp_of(&sandbox, &pk);
    // The signature goes through but its answer is lost.
    faults("sign:drop=1");
    fails(&["sign", &id], &format!("{code}\n"), "check `kiosk-agent request ID status` before repeating");
    faults("");
    assert!(ok(&env.run(&["request", &id, "status"])).contains("ISSUED"));
    assert_eq!(env.show(&id)["state"], "signed", "the status read tells the kiosk it went through");
}

/// With `sync.webhook_listen`, the server's callback moves an enrollment at once (the review
/// reads are an hour apart here); a webhook for an unknown request is ignored.
#[test]
fn a_webhook_moves_an_enrollment_at_once_in_both_generations() {
    for layout in LAYOUTS {
        let hook_port = free_port();
        let sandbox = Sandbox::start_with(0, &["--webhook", &format!("http://127.0.0.1:{hook_port}/hook")]);
        let env = Env::with_config(
            sandbox.addr.port(),
            layout,
            &format!(
                "review_poll_secs = 3600\nreview_poll_late_secs = 3600\nwebhook_listen = \"127.0.0.1:{hook_port}\"\n"
            ),
        );
        let id = env.enroll(&env.manifest("w", layout, |_| {}));
        let log = std::fs::File::create(env.dir.path().join("daemon.log")).unwrap();
        let mut daemon = env.cmd().arg("run").stdout(Stdio::null()).stderr(log).spawn_guarded();
        wait_for(Duration::from_secs(30), || {
            let e = env.show(&id);
            check(&e["state"], e["state"] == "in_review", ())
        });
        let pk = env.show(&id)["request_pk"].as_u64().expect("pk is a number").to_string();
        // Unknown request: accepted and ignored.
        let (code, _) = http(
            "POST",
            &format!("http://127.0.0.1:{hook_port}/hook"),
            Some(json!({"request": 1, "status": "SIGNED"})),
        );
        assert_eq!(code, 202);
        set_status(&sandbox, &pk, "ENROLLREADY");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while env.show(&id)["state"] != "approved" {
            if std::time::Instant::now() > deadline {
                let _ = daemon.kill();
                panic!(
                    "{layout}: not approved; sandbox: {}\nlog:\n{}",
                    request(&sandbox.records(), &pk),
                    std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
        let log = std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap();
        assert!(log.contains("webhook"), "{layout}: moved by the webhook, not a review read: {log}");
    }
}

#[test]
fn the_video_can_be_downloaded_back_in_both_generations() {
    for layout in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let (env, id) = reviewed(&sandbox, layout, "");
        let out = env.dir.path().join("back.mp4");
        ok(&env.cmd().args(["request", &id, "video", "--out"]).arg(&out).output().unwrap());
        assert_eq!(sha256_file(&out), sha256_file(&env.dir.path().join("m/video.mp4")), "{layout}");
        // Nothing is written under the name when the server has no video to give.
        let missing = env.dir.path().join("none.mp4");
        let failed = env.cmd().args(["request", "99999", "video", "--out"]).arg(&missing).output().unwrap();
        assert_exit(&failed, 2, &format!("{layout}: {}", String::from_utf8_lossy(&failed.stderr)));
        assert!(!missing.exists());
    }
}

/// OCR data corrected before approval (`PUT /request/{pk}`, with the request's scratchcard read
/// first): only the fields given change; a bad value is refused naming the field and nothing is
/// sent; after approval the correction is refused; the audit trail names fields, not values.
#[test]
fn ocr_data_is_corrected_before_approval_in_both_generations() {
    for layout in LAYOUTS {
        let sandbox = Sandbox::start(0);
        let (env, id) = reviewed(&sandbox, layout, "");
        let pk = env.show(&id)["request_pk"].as_u64().unwrap().to_string();
        refused(
            &env.run(&["request", &id, "correct", "--birth-date", "2000-01-01"]),
            "--birth-date: must be DD/MM/YYYY",
        );
        refused(&env.run(&["request", &id, "correct"]), "give at least one");
        assert_eq!(request(&sandbox.records(), &pk)["corrected"], json!([]), "{layout}: nothing sent");
        let out = ok(&env.run(&["request", &id, "correct", "--given-name", "ANA MARIA", "--birth-date", "01/02/1990"]));
        assert!(out.contains("corrected given_name, birth_date"), "{out}");
        let r = request(&sandbox.records(), &pk).clone();
        assert_eq!(r["corrected"], json!(["given_name", "birth_date"]), "{layout}: {r}");
        let audit = ok(&env.run(&["audit", "export"]));
        assert!(audit.contains("corrected given_name, birth_date") && !audit.contains("ANA MARIA"), "{audit}");
        ok(&env.run(&["request", &id, "approve"]));
        refused(&env.run(&["request", &id, "correct", "--surname-1", "GARCIA"]), "needs VIDEOREVIEW");
    }
}

/// `rao token create` trades the RAO's password and PIN (read from stdin, never stored) for a
/// token file (0600) that approves; `list` shows its uid, `delete` revokes it; wrong
/// credentials are refused with the server's words and write nothing.
#[test]
fn the_raos_password_and_pin_are_traded_once_for_a_token() {
    let sandbox = Sandbox::start(0);
    let env = Env::new(sandbox.addr.port());
    let out_file = env.dir.path().join("rao.token");
    let create = |stdin: &str| {
        env.run_with_stdin(
            &["rao", "token", "create", "--username", "1000279", "--out", out_file.to_str().unwrap()],
            stdin,
        )
    };
    refused(&create("wrong\nwrong\n"), "Make sure the credentials are correct");
    assert!(!out_file.exists(), "nothing written");
    ok(&create("3DPTm:N4\n23bYQq9a\n"));
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&out_file).unwrap();
    assert!(!token.contains("3DPTm") && token.trim().len() == 32, "{token:?}");
    // The token approves, with no password or PIN anywhere on the kiosk.
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n");
    std::fs::write(&env.config, text).unwrap();
    let id = env.enroll(&env.manifest("m", "", |_| {}));
    assert_exit(&env.run(&["sync", "--once"]), 0, "");
    ok(&env.run(&["request", &id, "approve"]));
    assert_eq!(env.show(&id)["state"], "approved");
    let listed = ok(&env.run(&["rao", "token", "list"]));
    let uid = listed.lines().next().unwrap().trim().to_owned();
    ok(&env.run(&["rao", "token", "delete", &uid]));
    assert!(ok(&env.run(&["rao", "token", "list"])).contains("no RAO token"));
}

/// Eleven documents go out in calls of at most ten (the server's limit per call, which the
/// sandbox enforces), all of them uploaded.
#[test]
fn more_than_ten_documents_go_out_in_calls_of_at_most_ten() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "legacy", "");
    ok(&env.run(&["request", &id, "approve"]));
    let dir = env.dir.path().to_owned();
    let files: Vec<PathBuf> = (0..11).map(|i| pdf(&dir, &format!("d{i}.pdf"), &format!("document {i}"))).collect();
    let mut cmd = env.cmd();
    cmd.args(["document", &id, "upload"]).args(&files);
    let out = cmd.output().unwrap();
    let said = ok(&out);
    assert!(said.contains("11 document(s) uploaded"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&env, &id);
    assert_eq!(docs.len(), 11);
    assert!(docs.iter().all(|d| d["state"] == "uploaded"), "{docs:?}");
    let pk = env.show(&id)["request_pk"].as_u64().unwrap().to_string();
    assert_eq!(request(&sandbox.records(), &pk)["documents"].as_object().unwrap().len(), 11);
}

/// Documents are streamed from the encrypted spool as they are sent: the process that sends
/// three documents of 19 MiB in one call (here `request approve`, which sends what was queued)
/// never holds them; its peak memory, as the kernel accounted it, stays below their total.
#[test]
fn large_documents_are_sent_without_being_held_in_memory() {
    // The server takes at most 20 MiB a document; a call carries at most 64 MiB.
    const SIZE: usize = 19 << 20;
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let mut files = Vec::new();
    for n in 0..3 {
        let doc = env.dir.path().join(format!("large-{n}.pdf"));
        let mut pdf = format!("%PDF-1.4\n% document {n}\n").into_bytes();
        let filler = b"% a comment line that pads the document to the size this test needs\n";
        while pdf.len() + filler.len() < SIZE - 64 {
            pdf.extend_from_slice(filler);
        }
        pdf.extend_from_slice(b"1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n");
        std::fs::write(&doc, &pdf).unwrap();
        files.push(doc);
    }
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    ok(&env.cmd().args(["document", &id, "upload"]).args(&files).output().unwrap());
    let (ran, peak) = run_measuring_peak(env.cmd().args(["request", &id, "approve"]));
    let said = ok(&ran);
    assert!(said.contains("3 queued document(s) uploaded"), "{said}");
    let pk = env.show(&id)["request_pk"].as_u64().unwrap().to_string();
    let server = request(&sandbox.records(), &pk)["documents"].clone();
    for (doc, file) in documents(&env, &id).iter().zip(&files) {
        let uid = doc["uid"].as_str().unwrap();
        assert_eq!(server[uid]["sha256"], sha256_file(file), "{} arrived byte-identical", file.display());
    }
    println!("sending {} MiB of documents in one call: peak RSS {} MiB", total >> 20, peak >> 20);
    assert!(peak < total, "peak RSS {} MiB while sending {} MiB", peak >> 20, total >> 20);
}

/// A document whose ciphertext was damaged on the disk is not sent as far as it decrypts and
/// then retried as if the network had failed: the upload stops, the error names the document
/// and the damage, and the document stays queued for an operator (nothing reached the server).
#[test]
fn a_damaged_document_is_named_not_sent_and_not_taken_for_a_network_failure() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let doc = pdf(env.dir.path(), "contract.pdf", "a contract");
    ok(&env.cmd().args(["document", &id, "upload"]).arg(&doc).output().unwrap());
    let spool = env.data_dir().join("documents");
    let sealed = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "enc"))
        .expect("the sealed document");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&sealed, &bytes).unwrap();
    let out = env.run(&["request", &id, "approve"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("contract.pdf") && err.contains("damaged"), "{err}");
    assert_ne!(out.status.code(), Some(0), "{err}");
    let pk = env.show(&id)["request_pk"].as_u64().unwrap().to_string();
    let held = request(&sandbox.records(), &pk)["documents"].clone();
    assert!(held.as_object().is_none_or(|d| d.is_empty()), "nothing reached the server: {held}");
    assert_ne!(documents(&env, &id)[0]["state"], "uploaded");
}

/// `document ID list | head -1`: a reader that goes away early ends the listing quietly.
#[test]
fn a_closed_pipe_ends_a_document_listing_quietly() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let doc = pdf(env.dir.path(), "contract.pdf", "a contract");
    ok(&env.cmd().args(["document", &id, "upload"]).arg(&doc).output().unwrap());
    for args in [&["document", &id, "list"][..], &["document", &id, "list", "--json"]] {
        assert_quiet_on_a_closed_pipe(env.cmd().args(args), &format!("{args:?}"));
    }
}

/// A document the server refuses for good (here: over its 20 MiB limit) is failed with the
/// server's words and never sent again, however many passes follow; an operator removes it
/// with `document ID delete-queued FILE`, which erases its sealed copy.
#[test]
fn a_document_the_server_refuses_fails_once_and_is_removed_on_purpose() {
    let sandbox = Sandbox::start(0);
    let (env, id) = reviewed(&sandbox, "current", "");
    let doc = env.dir.path().join("too-large.pdf");
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.resize(21 << 20, b' ');
    pdf.extend_from_slice(b"\n%%EOF\n");
    std::fs::write(&doc, &pdf).unwrap();
    ok(&env.cmd().args(["document", &id, "upload"]).arg(&doc).output().unwrap());
    ok(&env.run(&["request", &id, "approve"]));
    let docs = documents(&env, &id);
    assert_eq!(docs[0]["state"], "failed", "{docs:?}");
    assert!(docs[0]["error"].as_str().unwrap().contains("larger than"), "the server's words are kept: {docs:?}");
    let refused = |env: &Env| {
        env.show(&id)["history"].as_array().unwrap().iter().filter(|e| e["kind"] == "document_refused").count()
    };
    assert_eq!(refused(&env), 1);
    // More passes send nothing again.
    for _ in 0..3 {
        let _ = env.run(&["sync", "--once"]);
    }
    assert_eq!(refused(&env), 1, "the refused document was not sent again");
    assert_eq!(documents(&env, &id)[0]["state"], "failed");
    let sealed = || {
        std::fs::read_dir(env.data_dir().join("documents"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".enc"))
            .count()
    };
    assert_eq!(sealed(), 1);
    let said = ok(&env.run(&["document", &id, "delete-queued", "too-large.pdf"]));
    assert!(said.contains("removed"), "{said}");
    assert_eq!(documents(&env, &id)[0]["state"], "deleted");
    assert_eq!(sealed(), 0, "its sealed copy is erased");
    // An uploaded document is not removed this way.
    let small = pdf_file(&env, "small.pdf");
    ok(&env.cmd().args(["document", &id, "upload"]).arg(&small).output().unwrap());
    refused_with(
        &env.run(&["document", &id, "delete-queued", "small.pdf"]),
        "only a document that never reached the server",
    );
}

fn pdf_file(env: &Env, name: &str) -> PathBuf {
    pdf(env.dir.path(), name, "a small document")
}

fn refused_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "expected a refusal with {needle:?}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}
