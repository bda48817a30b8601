//! The chaos test: `kiosk-agent run` against a faulty sandbox, 50 enrollments submitted while
//! the daemon is killed with SIGKILL at random moments 20 times and restarted. Afterwards,
//! from the sandbox's own record: every acknowledged enrollment reached VIDEOREVIEW with
//! byte-identical images and video, and every create beyond one per enrollment is recorded
//! locally as that enrollment's orphan, with its request_pk. Nothing is stuck.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::util::*;

const ENROLLMENTS: usize = 50;
const KILLS: usize = 20;
const FAULTS: &str = "*:500=0.03,503=0.03,429=0.03,stall=0.01,reset=0.03,drop=0.03;create:drop=0.08;\
                      stall_secs=2;retry_after=1;offline=4/0.5";

/// Starts the daemon, appending its log to `daemon.log` (printed if the test fails).
fn start_daemon(env: &Env) -> Guard {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(env.dir.path().join("daemon.log")).unwrap();
    env.cmd().arg("run").env("KIOSK_AGENT_LOG", "info").stdout(Stdio::null()).stderr(log).spawn_guarded()
}

#[test]
fn kill_nine_twenty_times_under_faults_loses_nothing_new_optimizer() {
    chaos("current");
}

#[test]
fn kill_nine_twenty_times_under_faults_loses_nothing_old_optimizer() {
    chaos("legacy");
}

fn chaos(layout: &str) {
    let sandbox = Sandbox::start_with(0, &["--faults", FAULTS]);
    // Timeouts below the sandbox's stall, quick backoff and probes, a reconciliation budget that
    // does not make the test wait: it runs in well under a minute.
    let env = Arc::new(Env::with_config(
        sandbox.addr.port(),
        layout,
        "concurrency = 2\nprobe_cap_secs = 0.5\norphan_lookups_per_hour = 100000\n",
    ));
    let text =
        std::fs::read_to_string(&env.config).unwrap().replace("request_timeout_secs = 10", "request_timeout_secs = 1");
    std::fs::write(&env.config, text).unwrap();

    // Prepare every manifest first (distinct files and customer per enrollment).
    let manifests: Vec<_> = (0..ENROLLMENTS)
        .map(|i| {
            env.manifest(&format!("e{i}"), &format!("chaos-{i}"), |m| {
                m["customer"]["email"] = json!(format!("chaos{i}@example.com"))
            })
        })
        .collect();
    let acknowledged: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let submitter = {
        let (env, acknowledged) = (Arc::clone(&env), Arc::clone(&acknowledged));
        std::thread::spawn(move || {
            for (i, m) in manifests.iter().enumerate() {
                let out = env.cmd().arg("enroll").arg(m).output().unwrap();
                assert_exit(&out, 0, &format!("enroll {i}: {}", String::from_utf8_lossy(&out.stderr)));
                let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
                acknowledged.lock().unwrap().push((id, i));
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
    for _ in 0..KILLS {
        let mut daemon = start_daemon(&env);
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
    }
    submitter.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), ENROLLMENTS);

    // A last daemon drains everything; the wait is a bound against a hang, not a timing claim.
    let mut daemon = start_daemon(&env);
    let started = Instant::now();
    loop {
        let list = env.list();
        let done = |e: &serde_json::Value| e["state"] == "in_review" && e["orphan_check_pending"] == false;
        if list.len() == ENROLLMENTS && list.iter().all(done) {
            break;
        }
        let stuck: Vec<_> = list
            .iter()
            .filter(|e| !done(e))
            .map(|e| (e["state"].clone(), e["orphan_check_pending"].clone(), e["last_error"].clone()))
            .collect();
        if started.elapsed() > Duration::from_secs(240) || daemon.try_wait().unwrap().is_some() {
            let log = std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "not drained: {stuck:?}\ndaemon: {:?}\nlog tail:\n{}",
                daemon.try_wait(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let records = sandbox.records();
    let injected: u64 = records["faults_injected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(injected > 10, "the sandbox must really have misbehaved: {}", records["faults_injected"]);

    // Requests on the server, grouped by customer.
    let mut by_email: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in records["requests"].as_array().unwrap() {
        by_email.entry(r["email_sha256"].as_str().unwrap().to_owned()).or_default().insert(r["request_pk"].to_string());
    }
    let mut orphans_total = 0;
    let mut unknown_total = 0;
    for (id, i) in &acknowledged {
        let shown = env.show(id);
        let used = shown["request_pk"].as_u64().expect("pk is a number").to_string();
        let dir = env.dir.path().join(format!("e{i}"));
        assert_arrived(&records, &used, &dir);
        // Every other request of this customer is a recorded orphan of this enrollment.
        let email_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("chaos{i}@example.com")));
        let mut on_server = by_email.remove(&email_hash).unwrap_or_default();
        assert!(on_server.remove(&used), "{id}: its request is on the server");
        let recorded: BTreeSet<String> = shown["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().expect("pk is a number").to_string())
            .collect();
        // A lost create answer before this queue knew any request_pk has no floor to search
        // from: it is recorded as a possible orphan whose pk is unknown, and nothing is read.
        let pk_unknown = shown["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains("possible orphan request, pk unknown"));
        if pk_unknown && recorded.is_empty() {
            unknown_total += on_server.len();
            continue;
        }
        if on_server != recorded {
            let extra: Vec<_> = on_server.iter().map(|pk| request(&records, pk).clone()).collect();
            panic!(
                "{id}: extra creates must be recorded as orphans: server {on_server:?}, recorded {recorded:?}\n\
                 server records: {extra:?}\nhistory: {}",
                serde_json::to_string_pretty(&shown["history"]).unwrap()
            );
        }
        orphans_total += recorded.len();
    }
    assert!(by_email.is_empty(), "requests of no acknowledged enrollment: {by_email:?}");
    eprintln!(
        "chaos ({layout}): {ENROLLMENTS} enrollments, {KILLS} kills, {injected} faults injected, {} creates, \
         {orphans_total} orphans recorded, {unknown_total} possible orphans with unknown pk, drained in {:?}",
        records["creates"],
        started.elapsed()
    );
}
