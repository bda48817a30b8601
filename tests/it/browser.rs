//! The operator page in a real browser: Debian's chromium, headless, driven through
//! chromedriver (both installed by `scripts/setup-debian test`) against `kiosk-agent run` with
//! the sandbox and synthetic cameras. Screenshots go to `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::api::{authed, inline_manifest, start, Body, TOKEN};
use crate::util::*;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How long the page may take to show the answer to what the test did. A wait that is met
/// returns at once, so this is only ever spent on a failure; it is long because these machines
/// are shared (on CI two emulated VMs and the other tests run beside the browser, and a step
/// that takes a tenth of a second alone can take many seconds there). It is longer than every
/// time limit the page puts on its own requests but the submission's, so a request that fails
/// shows the page's message before the test gives up.
const PATIENCE: Duration = Duration::from_secs(90);

/// Polls `f` until it gives a value, for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until_else(limit, what, f, async { String::new() }).await
}

/// [`until`], whose failure also says what `explain` finds then (the daemon's view, its log).
async fn until_else<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut f: F,
    explain: impl std::future::Future<Output = String>,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", explain.await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Headless chromium under chromedriver (both installed by `scripts/setup-debian test`), with a
/// fresh profile in `profile` and `extra` flags; the driver process ends with the guard.
async fn chromium(profile: &std::path::Path, extra: &[String]) -> (fantoccini::Client, Driver) {
    let chromedriver = which("chromedriver").expect("chromedriver is installed by scripts/setup-debian test");
    let chromium = which("chromium").expect("chromium is installed by scripts/setup-debian test");
    let port = free_port();
    let driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--window-size=1920,1080".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend(extra.iter().cloned());
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
    let webdriver = format!("http://127.0.0.1:{port}");
    let client = until(PATIENCE, "chromedriver", || {
        let caps = caps.clone();
        let webdriver = webdriver.clone();
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&webdriver)
                .await
                .ok()
        }
    })
    .await;
    (client, driver)
}

/// Opens the operator page at `base` and gives the login dialog the token.
async fn log_in(client: &fantoccini::Client, base: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    open_session(client).await;
}

/// Gives the login dialog of the page already open the token, once the dialog shows.
async fn open_session(client: &fantoccini::Client) {
    let token = client.wait().for_element(Locator::Id("token")).await.unwrap();
    until(PATIENCE, "the login dialog", || async { token.is_displayed().await.ok().filter(|shown| *shown) }).await;
    token.send_keys(TOKEN).await.unwrap();
    client.find(Locator::Css("#login-form button")).await.unwrap().click().await.unwrap();
}

/// The text of element `id`, if it is there.
async fn text_of(client: &fantoccini::Client, id: &str) -> Option<String> {
    client.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

/// Whether element `id` is shown (not `hidden`).
async fn shown(client: &fantoccini::Client, id: &str) -> Option<bool> {
    client.execute(&format!("return !document.getElementById('{id}').hidden"), vec![]).await.ok()?.as_bool()
}

/// The page tells the operator what stopped and comes back by itself: a preview whose capture
/// service was killed shows "camera reconnecting…" and moves again once the daemon has started
/// the service again; the banner says "agent not responding" (with the time) within 5 s of the
/// daemon stopping, and "connected" again once it answers.
#[test]
fn the_page_recovers_when_a_camera_or_the_agent_stops() {
    let d = start(free_port(), "");
    let shots = screenshots();
    let daemon = d.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &[]).await;
        log_in(&client, &d.base).await;
        // The first step's camera: the document camera.
        let moving = || async {
            let w =
                client.execute("return document.getElementById('preview-document').naturalWidth", vec![]).await.ok()?;
            (w.as_u64()? > 0 && !shown(&client, "overlay-document").await?).then_some(())
        };
        until(PATIENCE, "the preview", moving).await;
        assert_eq!(text_of(&client, "agent").await.as_deref(), Some("agent: connected"));

        // The capture service dies (a crash, a camera driver gone): the daemon starts it again.
        // Children of any of the daemon's threads.
        let service: Vec<i32> = std::fs::read_dir(format!("/proc/{daemon}/task"))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().map(|p| p.parse().unwrap()).collect::<Vec<i32>>())
            .collect();
        assert!(!service.is_empty(), "the daemon runs its capture service");
        for pid in &service {
            rustix::process::kill_process(rustix::process::Pid::from_raw(*pid).unwrap(), rustix::process::Signal::KILL)
                .unwrap();
        }
        until(PATIENCE, "the overlay", || async { shown(&client, "overlay-document").await.filter(|s| *s) }).await;
        std::fs::write(shots.join("4-camera-reconnecting.png"), client.screenshot().await.unwrap()).unwrap();
        until(PATIENCE, "the preview back", moving).await;

        // The daemon stops answering (stopped, as a hung process would be), then resumes.
        let pid = rustix::process::Pid::from_raw(daemon as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        let stopped = Instant::now();
        let said = until(PATIENCE, "the banner", || async {
            text_of(&client, "agent").await.filter(|t| t.starts_with("agent not responding since"))
        })
        .await;
        let noticed = stopped.elapsed();
        std::fs::write(shots.join("5-agent-not-responding.png"), client.screenshot().await.unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        println!("the banner said {said:?} {} ms after the daemon stopped", noticed.as_millis());
        assert!(noticed <= Duration::from_secs(5), "noticed after {noticed:?}");
        until(PATIENCE, "the banner back", || async {
            text_of(&client, "agent").await.filter(|t| t == "agent: connected")
        })
        .await;
        until(PATIENCE, "the preview after the agent came back", moving).await;
        client.close().await.unwrap();
    });
}

/// A row on the page shows the enrollment's latest state whatever order the list and the event
/// stream arrive in: a list read before a change, whose answer arrives after that change's
/// event, does not put the row back a step (the page's answer is held here until then).
#[test]
fn a_list_read_before_a_change_does_not_undo_it_on_the_page() {
    let port = free_port();
    let d = start(port, "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &[]).await;
        log_in(&client, &d.base).await;
        let state = || async {
            let state = client
                .execute(
                    "const row = document.querySelector('#queue tr[data-id=\"' + arguments[0] + '\"]'); \
                     return row && row.dataset.state",
                    vec![json!(id)],
                )
                .await
                .ok()?;
            state.as_str().map(str::to_owned)
        };
        until(PATIENCE, "the row, queued: no server yet", || async {
            state().await.filter(|s| s == "queued")
        })
        .await;
        // The page asks for the list; its answer (queued) is held in the page.
        client
            .execute(
                "window.held = []; const real = window.fetch; \
                 window.fetch = async (url, init) => { const r = await real(url, init); \
                   if (url === '/v1/enrollments' && init.method === 'GET') await new Promise((go) => held.push(go)); \
                   return r; }; \
                 window.refreshed = refreshQueue();",
                vec![],
            )
            .await
            .unwrap();
        until(PATIENCE, "the list read and held", || async {
            let held = client.execute("return held.length", vec![]).await.ok()?;
            (held.as_u64()? >= 1).then_some(())
        })
        .await;
        // The server comes: the stream brings the row to review.
        let _sandbox = Sandbox::start(port);
        until(Duration::from_secs(90), "the row in review, from the stream", || async {
            state().await.filter(|s| s == "in_review")
        })
        .await;
        // Now the list read before arrives, and is rendered where it is not older than the row.
        let after = client
            .execute_async(
                "const done = arguments[arguments.length - 1]; held.forEach((go) => go()); \
                 refreshed.then(() => done(document.querySelector('#queue tr[data-id=\"' + arguments[0] + '\"]').dataset.state))",
                vec![json!(id)],
            )
            .await
            .unwrap();
        assert_eq!(after, json!("in_review"), "the late list did not put the row back");
        client.close().await.unwrap();
    });
}

/// The page guides and captures by itself: the document camera slides a card into place and
/// the operator presses nothing. The hints ask first for the whole card, the card's outline is
/// drawn over the preview, and the front is taken automatically once the card rests, cut out
/// (the thumbnail has the card's shape) with the document photo cut from it; axe-core finds no
/// serious violation in the guided preview.
#[test]
fn the_page_guides_and_takes_the_front_by_itself() {
    let sandbox = Sandbox::start(0);
    let d = crate::api::start_custom(sandbox.addr.port(), "", "", &[], crate::api::sliding_card_document_camera);
    let shots = screenshots();
    let axe = axe_source();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &[]).await;
        log_in(&client, &d.base).await;
        client
            .execute(
                "window.seenHints = []; window.outlineSeen = false; \
                 new MutationObserver(() => { \
                   const text = document.getElementById('hints-document').textContent; \
                   if (text && seenHints[seenHints.length - 1] !== text) seenHints.push(text); \
                   if (document.querySelector('#guide-document polygon')) outlineSeen = true; \
                 }).observe(document.getElementById('cameras'), { childList: true, characterData: true, subtree: true, attributes: true });",
                vec![],
            )
            .await
            .unwrap();
        until(PATIENCE, "the front taken by itself", || async {
            client.find(Locator::Css(".shot[data-slot=document_front][data-taken=pass]")).await.ok()
        })
        .await;
        let seen = client
            .execute(
                "const img = document.querySelector('.shot[data-slot=document_front] img'); \
                 return new Promise((done) => { const report = () => done([window.seenHints, window.outlineSeen, \
                   document.querySelector('.shot[data-slot=document_front] .verdict').textContent, \
                   img.naturalWidth / img.naturalHeight, \
                   document.querySelector('.shot[data-slot=document_photo]').dataset.taken || null]); \
                   if (img.complete && img.naturalWidth) report(); else img.onload = report; });",
                vec![],
            )
            .await
            .unwrap();
        println!("hints seen: {}", seen[0]);
        let hints: Vec<&str> = seen[0].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert!(hints.iter().any(|h| h.contains("show the whole card")), "{seen}");
        assert!(hints.iter().any(|h| h.contains("good — hold it there")), "{seen}");
        assert_eq!(seen[1], json!(true), "the card's outline was drawn: {seen}");
        assert_eq!(seen[2], "✓ taken automatically", "{seen}");
        assert!((seen[3].as_f64().unwrap() - 85.60 / 53.98).abs() < 0.02, "the thumbnail is the cut card: {seen}");
        assert_eq!(seen[4], "pass", "the document photo cut from the card: {seen}");
        std::fs::write(shots.join("auto-front.png"), client.screenshot().await.unwrap()).unwrap();
        let serious = serious_violations(&client, &axe).await;
        assert!(serious.is_empty(), "{serious:?}");
        // Taken again by hand: its answer will replace the front, so Next waits for it (a press
        // of Next meanwhile would move on with a still about to be replaced).
        let next_during = client
            .execute(
                "const next = document.querySelector('.step[data-step=front] .next'); const before = next.disabled; \
                 document.querySelector('.shot[data-slot=document_front] button').click(); return [before, next.disabled]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(next_during, json!([false, true]), "Next before and during a capture by hand");
        until(PATIENCE, "the front again", || async {
            client.find(Locator::Css(".shot[data-slot=document_front][data-taken=pass]:not([data-busy])")).await.ok()
        })
        .await;
        assert!(!disabled(&client, ".step[data-step=front] .next").await, "Next once the front passes again");
        // The review shows the whole camera frame beside the cut (keep_full_frame is on).
        client.find(Locator::Css("#stepper button[data-goto=review]")).await.unwrap().click().await.unwrap();
        let whole = client
            .execute("return document.querySelectorAll('#review-shots img[alt=\"Document front, the whole camera frame\"]').length", vec![])
            .await
            .unwrap();
        assert_eq!(whole, json!(1), "the whole frame on the review");
        // The rear step waits again, by itself; a capture by hand still works meanwhile.
        client.find(Locator::Css("#stepper button[data-goto=rear]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css(".shot[data-slot=document_rear] button")).await.unwrap().click().await.unwrap();
        until(PATIENCE, "the rear by hand", || async {
            client.find(Locator::Css(".shot[data-slot=document_rear][data-taken]")).await.ok()
        })
        .await;
        // A rear taken (by hand, or by the page after a retake), then "no rear" pressed: the
        // operator's word wins, nothing of the rear is submitted or shown.
        until(PATIENCE, "a rear that passes", || async {
            client.find(Locator::Css(".shot[data-slot=document_rear][data-taken=pass]")).await.ok()
        })
        .await;
        client.find(Locator::Css(".step[data-step=rear] .skip")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("#stepper button[data-goto=review]")).await.unwrap().click().await.unwrap();
        let rear = client
            .execute(
                "const shot = document.querySelector('.shot[data-slot=document_rear]'); \
                 const figures = [...document.querySelectorAll('#review-shots figure')]; \
                 const rear = figures.find((f) => f.querySelector('figcaption').textContent === 'Document rear'); \
                 return [shot.dataset.taken || null, shot.querySelector('img').hasAttribute('src'), rear.textContent]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(rear, json!([null, false, "none (skipped)Document rear"]), "the skipped rear is gone");
        client.close().await.unwrap();
    });
}

/// axe-core (pinned, fetched from the npm registry by `scripts/setup-debian test`).
fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/axe-core-4.14.1/axe.min.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup-debian test fetches axe-core)", path.display()))
}

/// axe-core's serious and critical violations on the page as it is now, as `rule: targets`.
async fn serious_violations(client: &fantoccini::Client, axe: &str) -> Vec<String> {
    client.execute(&format!("{axe}\nreturn true;"), vec![]).await.unwrap();
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             axe.run(document).then((r) => done({ passes: r.passes.length, violations: r.violations.map((v) => \
               ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')) })) }), \
               (e) => done({ passes: 0, violations: [{ id: 'axe failed: ' + e, impact: 'critical', targets: [] }] }));",
            vec![],
        )
        .await
        .unwrap();
    // A check that ran no rule would pass anything.
    assert!(result["passes"].as_u64() > Some(10), "axe-core ran too few rules: {result}");
    let all = result["violations"].as_array().unwrap();
    println!(
        "axe-core: {} rules passed, violations: {:?}",
        result["passes"],
        all.iter().map(|v| format!("{} ({})", v["id"], v["impact"])).collect::<Vec<_>>()
    );
    all.iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| format!("{} ({}): {}", v["id"], v["impact"], v["targets"]))
        .collect()
}

/// How the operator's input reaches the page: the mouse, a finger on a touchscreen, or the
/// keyboard (Enter on a button, Space on a radio or a check box).
#[derive(Clone, Copy, Debug)]
enum Input {
    Mouse,
    Touch,
    Keyboard,
}

/// Presses the element that `css` finds, by `input`'s real events.
async fn press(client: &fantoccini::Client, css: &str, input: Input) {
    use fantoccini::actions::{InputSource, PointerAction, TouchActions, MOUSE_BUTTON_LEFT};
    let el = client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    match input {
        Input::Mouse => el.click().await.unwrap_or_else(|e| panic!("{css}: {e}")),
        Input::Touch => {
            // A finger can only touch what is on the screen: the page is scrolled to it first.
            client
                .execute("arguments[0].scrollIntoView({block: 'center'})", vec![serde_json::to_value(&el).unwrap()])
                .await
                .unwrap();
            let tap = TouchActions::new("finger".into())
                .then(PointerAction::MoveToElement { element: el, duration: None, x: 0.0, y: 0.0 })
                .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
                .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
            client.perform_actions(tap).await.unwrap_or_else(|e| panic!("{css}: {e}"));
            client.release_actions().await.unwrap();
        }
        Input::Keyboard => {
            let kind = el.attr("type").await.unwrap();
            let key = if matches!(kind.as_deref(), Some("radio" | "checkbox")) { " " } else { "\u{e007}" };
            el.send_keys(key).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        }
    }
}

/// Types `text` into the field `id`.
async fn type_into(client: &fantoccini::Client, id: &str, text: &str) {
    client.find(Locator::Id(id)).await.unwrap().send_keys(text).await.unwrap();
}

/// The step shown, the stepper's current step, and whether the focus is on the step's heading.
async fn step_shown(client: &fantoccini::Client) -> serde_json::Value {
    client
        .execute(
            "const shown = [...document.querySelectorAll('.step')].filter((s) => !s.hidden).map((s) => s.dataset.step); \
             const current = document.querySelector('#stepper button[aria-current=step]'); \
             return [shown, current && current.dataset.goto, document.activeElement && document.activeElement.tagName];",
            vec![],
        )
        .await
        .unwrap()
}

/// Waits until `step` is the one shown (alone), marked in the stepper and focused.
async fn at_step(client: &fantoccini::Client, step: &str) {
    // On a timeout, what the page showed instead (visible steps, body's step, focused element)
    // and what each shot holds: a step that did not change tells a press that missed from a
    // focus taken elsewhere.
    let explain = async {
        let shots = client
            .execute(
                "return [...document.querySelectorAll('.shot')].map((s) => [s.dataset.slot, s.dataset.taken || '',                  s.querySelector('.verdict').textContent])",
                vec![],
            )
            .await
            .unwrap_or_default();
        format!("the page showed {} instead; shots: {shots}", step_shown(client).await)
    };
    until_else(
        PATIENCE,
        step,
        || async {
            let seen = step_shown(client).await;
            (seen == json!([[step], step, "H2"])).then_some(())
        },
        explain,
    )
    .await;
}

/// What the step `step` says it still needs.
async fn step_needs(client: &fantoccini::Client, step: &str) -> Vec<String> {
    let v = client
        .execute(
            &format!("return [...document.querySelectorAll('.step[data-step={step}] .step-missing li')].map((li) => li.textContent)"),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Whether the button `css` is disabled.
async fn disabled(client: &fantoccini::Client, css: &str) -> bool {
    client.find(Locator::Css(css)).await.unwrap().attr("disabled").await.unwrap().is_some()
}

/// Presses a step's capture button until the still passes, as an operator does when the page
/// says "Retake"; at most four presses, each retake printed with its reason.
async fn capture(client: &fantoccini::Client, slot: &str, input: Input) {
    let mut answers = Vec::new();
    for _ in 0..4 {
        press(client, &format!(".shot[data-slot={slot}] button"), input).await;
        // The press's own answer: the shot is busy from the press until it comes.
        let answer = until(PATIENCE, slot, || async {
            let v = client
                .execute(
                    &format!(
                        "const s = document.querySelector('.shot[data-slot={slot}]'); \
                         return s.hasAttribute('data-busy') ? null : [s.dataset.taken || '', s.querySelector('.verdict').textContent]"
                    ),
                    vec![],
                )
                .await
                .ok()?;
            (!v.is_null()).then_some(v)
        })
        .await;
        if answer[0] == "pass" {
            return;
        }
        println!("{slot}: {answer}");
        answers.push(answer);
    }
    panic!("{slot} never passed in four presses: {answers:?}");
}

/// An operator enrolls a customer step by step, at each of the kiosk's three screen sizes and
/// with its own input: the mouse at 1920×1080, the keyboard at 1280×800, a finger at portrait
/// 1080×1920. At each step the page shows only that step, marks it in the stepper, puts the
/// focus on its heading, says what it still needs, keeps Next (and Submit) disabled until
/// nothing is, passes axe-core with no serious or critical violation, and is saved as a
/// screenshot. No check about the customer is preset; the review shows every capture and field
/// and who stated each check; the enrollment is delivered, and its manifest and the audit trail
/// say who made each claim.
#[test]
fn an_operator_enrolls_step_by_step_at_three_sizes() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let shots = screenshots();
    let axe = axe_source();
    let mut queued = Vec::new();
    let sizes = [(1920u32, 1080u32, Input::Mouse), (1280, 800, Input::Keyboard), (1080, 1920, Input::Touch)];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &[]).await;
        let mut violations = Vec::new();
        let mut checks = 0;
        for (w, h, input) in sizes {
            let size = format!("{w}x{h}");
            client.set_window_size(w, h).await.unwrap();
            client.delete_all_cookies().await.unwrap();
            client.goto(&format!("{}/", d.base)).await.unwrap();
            let token = client.wait().for_element(Locator::Id("token")).await.unwrap();
            until(PATIENCE, "the login dialog", || async {
                token.is_displayed().await.ok().filter(|s| *s)
            })
            .await;
            let mut axe_at = |found: Vec<String>, what: &str| {
                checks += 1;
                violations.extend(found.into_iter().map(|v| format!("{size} {what}: {v}")));
            };
            axe_at(serious_violations(&client, &axe).await, "login");
            // Every still by hand here: with the auto-capture on, the camera's test pattern could
            // be taken while the test checks that Next waits for it (the auto-capture has its own
            // test, `the_page_guides_and_takes_the_front_by_itself`). It is switched off before
            // the session opens: the auto-capture starts with the session and takes the pattern
            // about 1.4 s later, which a press after the log-in did not always beat on a loaded
            // machine. (No operator input is lost: the keyboard's Space and the mouse and finger
            // on a check box are the acceptance's, below.)
            client.execute("document.getElementById('auto-capture').checked = false", vec![]).await.unwrap();
            open_session(&client).await;
            at_step(&client, "front").await;
            let auto = client
                .execute(
                    "return [document.getElementById('auto-capture').checked, document.querySelectorAll('.shot[data-taken]').length]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(auto, json!([false, 0]), "{size}: the auto-capture off, nothing taken by itself");
            let shot = |name: &str| shots.join(format!("flow-{size}-{name}.png"));

            // Straight to the review: nothing can be submitted yet, and it says what is missing.
            press(&client, "#stepper button[data-goto=review]", input).await;
            at_step(&client, "review").await;
            assert!(disabled(&client, "#submit").await, "{size}: Submit with nothing captured");
            let needed: Vec<String> = serde_json::from_value(
                client
                    .execute("return [...document.querySelectorAll('#missing li')].map((li) => li.textContent)", vec![])
                    .await
                    .unwrap(),
            )
            .unwrap();
            for item in ["Document front", "Selfie", "Video", "Mobile phone", "Answer: Liveness check", "Similarity level"] {
                assert!(needed.iter().any(|n| n.starts_with(item)), "{size}: {item} in {needed:?}");
            }
            press(&client, "#stepper button[data-goto=front]", input).await;

            // 1. The front: the document camera's preview moves, Next waits for a still that passes
            // and the document photo cut from it.
            at_step(&client, "front").await;
            until(PATIENCE, "the document preview", || async {
                let w = client.execute("return document.getElementById('preview-document').naturalWidth", vec![]).await.ok()?;
                (w.as_u64()? > 0).then_some(())
            })
            .await;
            let face_streams =
                client.execute("return document.getElementById('preview-face').hasAttribute('src')", vec![]).await.unwrap();
            assert_eq!(face_streams, json!(false), "{size}: only the step's camera streams");
            assert!(disabled(&client, ".step[data-step=front] .next").await);
            assert!(step_needs(&client, "front").await.iter().any(|n| n.starts_with("Document front")));
            axe_at(serious_violations(&client, &axe).await, "front");
            std::fs::write(shot("1-front"), client.screenshot().await.unwrap()).unwrap();
            capture(&client, "document_front", input).await;
            let (pw, ph) = until(PATIENCE, "the document photo's thumbnail", || async {
                let size = client
                    .execute(
                        "const i = document.querySelector('.shot[data-slot=document_photo][data-taken=pass] img'); \
                         return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null",
                        vec![],
                    )
                    .await
                    .ok()?;
                serde_json::from_value::<(u64, u64)>(size).ok().filter(|(w, _)| *w > 0)
            })
            .await;
            assert!(ph > pw && pw > 0, "{size}: the photo is a portrait cut from the front, {pw}x{ph}");
            assert!(!disabled(&client, ".step[data-step=front] .next").await, "{size}: Next once the front passes");
            press(&client, ".step[data-step=front] .next", input).await;

            // 2. The rear: optional. Captured with the mouse, skipped (a passport) otherwise.
            at_step(&client, "rear").await;
            assert!(disabled(&client, ".step[data-step=rear] .next").await);
            axe_at(serious_violations(&client, &axe).await, "rear");
            std::fs::write(shot("2-rear"), client.screenshot().await.unwrap()).unwrap();
            if matches!(input, Input::Mouse) {
                capture(&client, "document_rear", input).await;
                press(&client, ".step[data-step=rear] .next", input).await;
            } else {
                press(&client, ".step[data-step=rear] .skip", input).await;
            }

            // 3. The selfie, on the face camera.
            at_step(&client, "selfie").await;
            until(PATIENCE, "the face preview", || async {
                let v = client
                    .execute(
                        "return [document.getElementById('preview-face').naturalWidth, \
                         document.getElementById('preview-document').hasAttribute('src')]",
                        vec![],
                    )
                    .await
                    .ok()?;
                (v[0].as_u64()? > 0 && v[1] == json!(false)).then_some(())
            })
            .await;
            assert!(disabled(&client, ".step[data-step=selfie] .next").await);
            axe_at(serious_violations(&client, &axe).await, "selfie");
            std::fs::write(shot("3-selfie"), client.screenshot().await.unwrap()).unwrap();
            capture(&client, "document_owner", input).await;
            press(&client, ".step[data-step=selfie] .next", input).await;

            // 4. The video: three seconds with the countdown running, then played back before
            // it is accepted.
            at_step(&client, "video").await;
            assert!(disabled(&client, ".step[data-step=video] .next").await);
            press(&client, "#record", input).await;
            until(PATIENCE, "the countdown", || async {
                text_of(&client, "countdown").await.filter(|t| t.contains("left"))
            })
            .await;
            // The clip's length: time is what is being recorded here, not a synchronisation.
            tokio::time::sleep(Duration::from_secs(3)).await;
            press(&client, "#stop", input).await;
            until_else(
                PATIENCE,
                "the recording",
                || async { text_of(&client, "video-result").await.filter(|t| t.contains("recorded")) },
                async { format!("the page said: {:?}", text_of(&client, "video-result").await) },
            )
            .await;
            let clip = until(PATIENCE, "the clip's playback", || async {
                let v = client
                    .execute(
                        "const v = document.getElementById('playback'); \
                         return v.hidden || !(v.duration > 0) ? null : [v.duration, v.videoWidth]",
                        vec![],
                    )
                    .await
                    .ok()?;
                (!v.is_null()).then_some(v)
            })
            .await;
            assert!(clip[0].as_f64() > Some(1.0) && clip[1].as_u64() > Some(0), "{size}: {clip}");
            axe_at(serious_violations(&client, &axe).await, "video");
            std::fs::write(shot("4-video"), client.screenshot().await.unwrap()).unwrap();
            press(&client, ".step[data-step=video] .next", input).await;

            // 5. The customer's data and the checks: none preset.
            at_step(&client, "customer").await;
            let preset = client
                .execute(
                    "return [document.querySelectorAll('#claims input[type=radio]:checked').length, \
                     document.getElementById('similarity').value, document.getElementById('accept').checked]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(preset, json!([0, "", false]), "{size}: no check answered, no similarity, no acceptance");
            let needs = step_needs(&client, "customer").await;
            for item in ["Mobile phone", "Answer: Liveness check", "Answer: Face matches", "Similarity level", "The customer's acceptance"] {
                assert!(needs.iter().any(|n| n.starts_with(item)), "{size}: {item} in {needs:?}");
            }
            assert!(disabled(&client, ".step[data-step=customer] .next").await);
            axe_at(serious_violations(&client, &axe).await, "customer");
            let by_software = matches!(input, Input::Touch);
            if by_software {
                // The verification software's JSON fills and locks what it gives.
                type_into(
                    &client,
                    "ocr_json",
                    r#"{"ocr_data": {"given_name": "Ana", "surname_1": "García", "serial_number": "12345678Z"}, "security_checks": {"liveliness": true, "documents_match": true}, "similarity_level": 91, "software": "FaceCheck 2"}"#,
                )
                .await;
                let locked = client
                    .execute(
                        "const $ = (id) => document.getElementById(id); \
                         return [$('given_name').value, $('given_name').readOnly, $('similarity').value, $('similarity').readOnly, \
                         document.querySelector('input[name=liveliness][value=true]').checked, \
                         document.querySelector('input[name=documents_match]').disabled, $('claims-source').textContent]",
                        vec![],
                    )
                    .await
                    .unwrap();
                assert_eq!(locked, json!(["Ana", true, "91", true, true, true, "Stated by: software:FaceCheck 2"]));
            } else {
                press(&client, "input[name=liveliness][value=true]", input).await;
                press(&client, "input[name=documents_match][value=true]", input).await;
                type_into(&client, "similarity", "88").await;
                for (id, value) in [("given_name", "Ana"), ("surname_1", "García"), ("serial_number", "12345678Z")] {
                    type_into(&client, id, value).await;
                }
            }
            type_into(&client, "phone", "+34699999999").await;
            type_into(&client, "email", "ana.garcia@example.com").await;
            assert!(disabled(&client, ".step[data-step=customer] .next").await, "{size}: Next before the acceptance");
            press(&client, "#accept", input).await;
            assert_eq!(step_needs(&client, "customer").await, Vec::<String>::new());
            std::fs::write(shot("5-customer"), client.screenshot().await.unwrap()).unwrap();
            press(&client, ".step[data-step=customer] .next", input).await;

            // 6. The review: every capture, every field, each check with who stated it.
            at_step(&client, "review").await;
            let review = client
                .execute(
                    "return [document.querySelectorAll('#review-shots img').length, \
                     document.querySelectorAll('#review-shots video').length, \
                     document.getElementById('review-fields').textContent, document.getElementById('submit').disabled]",
                    vec![],
                )
                .await
                .unwrap();
            let images = if matches!(input, Input::Mouse) { 4 } else { 3 };
            assert_eq!(review[0], json!(images), "{size}: {review}");
            assert_eq!(review[1], json!(1), "{size}: {review}");
            let fields = review[2].as_str().unwrap();
            let by = if by_software { "stated by software:FaceCheck 2" } else { "stated by the operator" };
            for seen in ["ana.garcia@example.com", "+34699999999", "12345678Z", "Liveness checkpassed", by] {
                assert!(fields.contains(seen), "{size}: {seen} in {fields}");
            }
            if by_software {
                assert!(fields.contains("Ana (from the OCR JSON)"), "{size}: {fields}");
            } else {
                assert!(fields.contains("Ana (typed by the operator)"), "{size}: {fields}");
            }
            assert_eq!(review[3], json!(false), "{size}: everything is there: Submit is enabled");
            axe_at(serious_violations(&client, &axe).await, "review");
            std::fs::write(shot("6-review"), client.screenshot().await.unwrap()).unwrap();
            press(&client, "#submit", input).await;
            // Past the page's own limit for a submission (120 s): a submission that fails shows
            // the page's message, which the wait's failure then quotes.
            let message = until_else(
                Duration::from_secs(150),
                "the submission",
                || async { text_of(&client, "message").await.filter(|t| t.starts_with("Queued")) },
                async { format!("the page said: {:?}", text_of(&client, "message").await) },
            )
            .await;
            let prefix = message.trim_start_matches("Queued: ").split('.').next().unwrap().to_owned();
            // The next customer starts at the first step, with nothing of this one left.
            at_step(&client, "front").await;
            // Generous: on a loaded 2-core machine the worker may be in a retry backoff.
            // On a failure: what the page shows, what the daemon has, what it logged.
            let explain = async {
                let page = client
                    .execute("return [...document.querySelectorAll('#queue tr')].map((r) => r.dataset.state + ' ' + r.textContent)", vec![])
                    .await;
                format!("the page: {page:?}\nthe queue: {:?}\nthe log:\n{}", d.env.list(), d.log_tail(40))
            };
            let delivered = until_else(Duration::from_secs(180), "the row in review", || async {
                let full = client
                    .execute(
                        "const row = document.querySelector('#queue tr[data-id^=\"' + arguments[0] + '\"][data-state=in_review]'); \
                         const p = row && row.querySelector('progress'); \
                         return p ? [p.value === p.max, row.textContent] : null",
                        vec![json!(prefix)],
                    )
                    .await
                    .ok()?;
                (!full.is_null()).then_some(full)
            }, explain)
            .await;
            let v = delivered.as_array().expect("[full, text]");
            assert_eq!(v[0], json!(true), "{size}: delivered, the bar is full: {v:?}");
            assert!(v[1].as_str().unwrap().contains("100 %"), "{v:?}");
            let left = client
                .execute(
                    "return [localStorage.length, sessionStorage.length, document.getElementById('email').value, \
                     document.querySelectorAll('.shot img[src]').length, document.getElementById('submit').disabled]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(left, json!([0, 0, "", 0, true]), "{size}: storage, form and thumbnails are cleared");
            axe_at(serious_violations(&client, &axe).await, "queue");
            std::fs::write(shot("7-queued"), client.screenshot().await.unwrap()).unwrap();
            queued.push((prefix, by_software));
        }
        client.close().await.unwrap();
        println!("axe-core: {} serious or critical violation(s) in {checks} checks", violations.len());
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    });
    // Who made each claim is recorded with the evidence: the signed capture manifest and the
    // audit trail say the operator, or the software whose JSON was pasted.
    let listed = d.env.list();
    for (prefix, by_software) in &queued {
        let id = listed
            .iter()
            .filter_map(|e| e["id"].as_str())
            .find(|id| id.starts_with(prefix.as_str()))
            .unwrap_or_else(|| panic!("{prefix} in {listed:?}"))
            .to_owned();
        let shown = d.env.show(&id);
        let by = if *by_software { "software:FaceCheck 2" } else { "operator" };
        assert_eq!(
            shown["capture_manifest"]["manifest"]["claims_source"],
            json!({"liveliness": by, "documents_match": by, "similarity_level": by}),
            "{shown}"
        );
    }
    let audit = d.env.run(&["audit", "export"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("documents_match by operator") && audit.contains("liveliness by software:FaceCheck 2"),
        "{audit}"
    );
    // What the sandbox received is what the cameras captured: the photo is the portrait cut
    // from the front (a part of it, so smaller), and the rear only where it was captured.
    let records = sandbox.records();
    let requests = records["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{records}");
    for request in requests {
        let images = &request["images"];
        let size = |slot: &str| images[slot]["size"].as_u64().unwrap_or_else(|| panic!("no {slot}: {images}"));
        assert!(size("document_photo") < size("document_front"), "{images}");
    }
    let rears = requests.iter().filter(|r| r["images"]["document_rear"].is_object()).count();
    assert_eq!(rears, 1, "{records}");
}

/// The page speaks the browser's language when it ships it (Spanish here, from a browser that
/// asks for es-ES), every text from its one table: none is left untranslated, the static ones or
/// those the page writes as it works (a capture's verdict, what is still missing, the queue).
/// `api.language` fixes the language whatever the browser asks.
#[test]
fn the_page_speaks_spanish_to_a_spanish_browser() {
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let shots = screenshots();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let spanish = ["--lang=es-ES".to_owned(), "--accept-lang=es-ES,es".to_owned()];
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &spanish).await;
        log_in(&client, &d.base).await;
        until(PATIENCE, "the queue's row", || async { client.find(Locator::Css("#queue tr")).await.ok() })
            .await;
        // Every step once, so that each writes its texts, then a selfie judged.
        for step in ["review", "customer", "video", "rear", "selfie"] {
            client.find(Locator::Css(&format!("#stepper button[data-goto={step}]"))).await.unwrap().click().await.unwrap();
        }
        client.find(Locator::Css(".shot[data-slot=document_owner] button")).await.unwrap().click().await.unwrap();
        until(PATIENCE, "the selfie", || async {
            client.find(Locator::Css(".shot[data-slot=document_owner][data-taken]")).await.ok()
        })
        .await;
        let seen = client
            .execute(
                "return [document.documentElement.lang, document.querySelector('h1').textContent, \
                 document.getElementById('submit').textContent, document.querySelector('#queue tr .state').textContent, \
                 document.querySelector('.shot[data-slot=document_owner] .verdict').textContent, window.untranslatedTexts()]",
                vec![],
            )
            .await
            .unwrap();
        std::fs::write(shots.join("spanish.png"), client.screenshot().await.unwrap()).unwrap();
        assert_eq!(seen[0], "es", "{seen}");
        assert_eq!(seen[1], "Alta con kiosk-agent", "{seen}");
        assert_eq!(seen[2], "Enviar alta", "{seen}");
        assert_eq!(seen[3], "entregada: en revisión", "{seen}");
        assert!(seen[4].as_str().unwrap().starts_with("✓ válida") || seen[4].as_str().unwrap().starts_with("Repetir"), "{seen}");
        assert_eq!(seen[5], json!([]), "untranslated texts: {seen}");
        client.close().await.unwrap();
    });
    // The configuration decides over the browser.
    drop(d);
    let d = start(sandbox.addr.port(), "language = \"es\"\n");
    let host = d.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept-Language: en-US,en\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut html = String::new();
    std::io::Read::read_to_string(&mut stream, &mut html).unwrap();
    assert!(html.contains("<html lang=\"es\">"), "{html}");
}

/// Text of the page's script's fetch of `url`: `[status, first five bytes]`.
async fn fetch_head(client: &fantoccini::Client, url: &str) -> serde_json::Value {
    client
        .execute_async(
            "const done = arguments[1]; fetch(arguments[0]).then(async (r) => \
               done([r.status, new TextDecoder().decode((await r.arrayBuffer()).slice(0, 5))]), (e) => done([0, String(e)]));",
            vec![json!(url)],
        )
        .await
        .unwrap()
}

/// The customer's part of the signing flow on the page, once the RAO approved (through the API:
/// the approval is not on the page): the contract opens as a PDF, the code goes to their phone,
/// a wrong code is refused in plain words, the right one signs, and the signed copy opens and
/// downloads as a PDF.
#[test]
fn the_customer_signs_on_the_page_and_gets_the_signed_copy() {
    let sandbox = Sandbox::start_with(0, &["--otp-interval", "0"]);
    let d = crate::api::start_with(
        sandbox.addr.port(),
        "",
        "[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n",
        &[("rao.token", "f734066d1ce36f9cae4d55be4cdac50e\n")],
    );
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let enrollment = |d: &crate::api::Daemon| authed(d, "GET", &format!("/v1/enrollments/{id}"), None).1;
    wait_for(PATIENCE, || {
        let e = enrollment(&d);
        check(&e["state"], e["state"] == "in_review", ())
    });
    let pdf = b"%PDF-1.4\n% terms\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
    let (code, body) =
        authed(&d, "POST", &format!("/v1/enrollments/{id}/documents?name=terms.pdf"), Some(Body::Raw(pdf)));
    assert_eq!(code, 202, "{body}");
    let (code, body) = authed(&d, "POST", &format!("/v1/enrollments/{id}/approve"), None);
    assert_eq!(code, 200, "{body}");
    wait_for(PATIENCE, || {
        let e = enrollment(&d);
        let uploaded = e["history"].as_array().unwrap().iter().any(|h| h["kind"] == "document_uploaded");
        check(&e["state"], e["state"] == "approved" && uploaded, ())
    });
    let pk = enrollment(&d)["request_pk"].as_u64().unwrap();
    let shots = screenshots();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (client, _driver) = chromium(&d.env.dir.path().join("chrome"), &[]).await;
        log_in(&client, &d.base).await;
        let open = until(PATIENCE, "the signing button", || async {
            client.find(Locator::Css("#queue tr[data-state=approved] button.open-signing")).await.ok()
        })
        .await;
        open.click().await.unwrap();
        until(PATIENCE, "the document's name", || async {
            let text = client.find(Locator::Id("signing-docs")).await.ok()?.text().await.ok()?;
            text.contains("terms.pdf").then_some(())
        })
        .await;
        let contract = client.find(Locator::Id("contract-link")).await.unwrap().attr("href").await.unwrap().unwrap();
        assert_eq!(fetch_head(&client, &contract).await, json!([200, "%PDF-"]), "the contract opens as a PDF");

        client.find(Locator::Id("send-otp")).await.unwrap().click().await.unwrap();
        until(PATIENCE, "the code sent", || async {
            let text = client.find(Locator::Id("signing-message")).await.ok()?.text().await.ok()?;
            text.contains("on its way").then_some(())
        })
        .await;
        let otp_url = sandbox.url(&format!("/_sandbox/requests/{pk}/otp"));
        let (_, otp) = tokio::task::spawn_blocking(move || http("GET", &otp_url, None)).await.unwrap();
        let right = otp["otp"].as_str().unwrap().to_owned();
        let wrong = if right == "000000" { "111111" } else { "000000" };
        let input = client.find(Locator::Id("otp")).await.unwrap();
        input.send_keys(wrong).await.unwrap();
        client.find(Locator::Id("sign")).await.unwrap().click().await.unwrap();
        let refused = until(PATIENCE, "the refusal", || async {
            let text = client.find(Locator::Id("signing-message")).await.ok()?.text().await.ok()?;
            text.starts_with("Not signed").then_some(text)
        })
        .await;
        assert!(refused.len() > "Not signed: ".len(), "the refusal says why: {refused}");
        input.clear().await.unwrap();
        input.send_keys(&right).await.unwrap();
        client.find(Locator::Id("sign")).await.unwrap().click().await.unwrap();
        let download = until(PATIENCE, "the signed copy", || async {
            client.find(Locator::Css("#signing-docs a.signed-download")).await.ok()
        })
        .await;
        let url = download.attr("href").await.unwrap().unwrap();
        assert_eq!(fetch_head(&client, &url).await, json!([200, "%PDF-"]), "the signed copy is a PDF");
        assert_eq!(download.attr("download").await.unwrap().as_deref(), Some("signed-terms.pdf"));
        std::fs::write(shots.join("6-signed.png"), client.screenshot().await.unwrap()).unwrap();
        // The signing panel, signed copies listed, passes the same accessibility check.
        let found = serious_violations(&client, &axe_source()).await;
        assert!(found.is_empty(), "{}", found.join("\n"));
        client.close().await.unwrap();
    });
    let audit = d.env.run(&["audit", "export"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("OTP sent: request") && audit.contains("signed: request"), "{audit}");
}

/// The attacker's page: every way a page of another origin can reach the API, each recorded in
/// `window.done` as a list of `[what, outcome]` (a status it could read, or what blocked it).
const ATTACKER_PAGE: &str = r#"<!doctype html><html><body><iframe name="sink"></iframe><script>
const api = location.hash.slice(1).split(",")[0], id = location.hash.slice(1).split(",")[1];
const results = [];
async function attempt(what, f) {
  try { results.push([what, String(await f())]); } catch (e) { results.push([what, "blocked: " + e.name]); }
}
const noCors = (path, body) => fetch(api + path, { method: "POST", mode: "no-cors", credentials: "include", body })
  .then((r) => "opaque " + r.type);
(async () => {
  await attempt("no-cors approve", () => noCors("/v1/enrollments/" + id + "/approve", "{}"));
  await attempt("no-cors refuse", () => noCors("/v1/enrollments/" + id + "/refuse", '{"reason":"x"}'));
  await attempt("no-cors enroll", () => noCors("/v1/enrollments", '{"customer":{}}'));
  await attempt("no-cors still", () => noCors("/v1/captures/still", '{"role":"face"}'));
  await attempt("cors json approve", () => fetch(api + "/v1/enrollments/" + id + "/approve", { method: "POST",
    credentials: "include", headers: { "content-type": "application/json" }, body: "{}" }).then((r) => r.status));
  await attempt("cors read queue", () => fetch(api + "/v1/enrollments", { credentials: "include" }).then((r) => r.status));
  // A form posted into an iframe: the browser sends it with the operator's cookie.
  for (const [path, enctype] of [["/v1/enrollments/" + id + "/approve", "text/plain"], ["/v1/enrollments", "multipart/form-data"]]) {
    const form = document.createElement("form");
    form.method = "POST"; form.action = api + path; form.enctype = enctype; form.target = "sink";
    const input = document.createElement("input"); input.name = '{"a":"'; input.value = '"}'; form.append(input);
    document.body.append(form); form.submit();
    await new Promise((r) => setTimeout(r, 500));
  }
  results.push(["form posts", "sent"]);
  // Camera frames and stills as images: loaded only if the API lets another origin embed them.
  for (const path of ["/v1/cameras/face/preview.mjpg", "/v1/captures/00000000-0000-0000-0000-000000000000/thumbnail.jpg"]) {
    await attempt("img " + path, () => new Promise((resolve) => {
      const img = new Image(); img.onload = () => resolve("loaded " + img.naturalWidth);
      img.onerror = () => resolve("blocked: error"); img.src = api + path;
      setTimeout(() => resolve(img.naturalWidth > 0 ? "loaded " + img.naturalWidth : "blocked: nothing"), 3000);
    }));
  }
  window.done = results;
})();
</script></body></html>"#;

/// A page of the attacker's that reaches the API through DNS rebinding: it is loaded under the
/// attacker's name while that name points at the attacker's server, then the name points at the
/// kiosk (here: the attacker's server gives the port up to the daemon), and the script, now
/// "same-origin" with the API, polls it until the daemon answers.
const REBINDING_PAGE: &str = r#"<!doctype html><html><body><script>
const results = [];
const statusOf = (path, init) => fetch(path, init).then((r) => r.headers.get("x-attacker") ? null : r.status, () => null);
(async () => {
  while ((await statusOf("/healthz")) === null) await new Promise((r) => setTimeout(r, 200));
  for (const [path, init] of [["/v1/status"], ["/v1/enrollments"], ["/v1/cameras/face/preview.mjpg"],
       ["/v1/enrollments", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }],
       ["/v1/captures/still", { method: "POST", headers: { "content-type": "application/json" }, body: '{"role":"face"}' }]]) {
    results.push([(init ? "POST " : "GET ") + path, await statusOf(path, init)]);
  }
  window.done = results;
})();
</script></body></html>"#;

/// Serves `page` on `listener` (the attacker's own server) for at most `requests` requests,
/// then closes it.
fn attacker_site(listener: std::net::TcpListener, page: &'static str, requests: usize) {
    use std::io::{Read as _, Write as _};
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(requests) {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = page.as_bytes();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Attacker: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
        }
    });
}

/// A page from another origin, in the same chromium where the operator is logged in, tries to
/// approve, refuse, enroll and capture through the API (no-cors fetches, a CORS fetch, form
/// posts, images) and, through a rebinding `Host`, to read the queue: every attempt is refused,
/// nothing changes on the server or in the queue, while the operator's own origin still works.
#[test]
fn a_page_of_another_origin_cannot_act_through_the_api() {
    let sandbox = Sandbox::start(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The rebinding page is loaded first, from the attacker's server on the port the API will
    // take: the browser holds a page of origin http://rebind.test:PORT when the daemon starts.
    let rebinding = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_port = rebinding.local_addr().unwrap().port();
    attacker_site(rebinding, REBINDING_PAGE, 1);
    let profile = tempfile::tempdir().unwrap();
    let rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1".to_owned();
    let (client, _driver) = rt.block_on(chromium(profile.path(), &[rules]));
    rt.block_on(client.goto(&format!("http://rebind.test:{api_port}/"))).unwrap();
    let rebinding_tab = rt.block_on(client.window()).unwrap();
    // The attacker's server gives the port up after that one page; the kiosk's daemon takes it.
    let d = wait_for(PATIENCE, || {
        std::net::TcpListener::bind(("127.0.0.1", api_port)).ok().map(drop)?;
        Some(crate::api::start_on(
            api_port,
            sandbox.addr.port(),
            "",
            "[rao]\nid = \"1400\"\ntoken_file = \"rao.token\"\n",
            &[("rao.token", "f734066d1ce36f9cae4d55be4cdac50e\n")],
            |c| c,
        ))
    });
    // One enrollment in review: what the attacker would approve or refuse.
    let dir = d.env.manifest("m", "", |_| {}).parent().unwrap().to_owned();
    let (code, body) = authed(&d, "POST", "/v1/enrollments", Some(Body::Json(inline_manifest(&dir))));
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    wait_for(PATIENCE, || {
        let e = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1;
        check(&e["state"], e["state"] == "in_review", ())
    });
    let pk = authed(&d, "GET", &format!("/v1/enrollments/{id}"), None).1["request_pk"].as_u64().unwrap().to_string();
    let attacker_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let attacker = attacker_listener.local_addr().unwrap().port();
    attacker_site(attacker_listener, ATTACKER_PAGE, usize::MAX);
    let outcomes = rt.block_on(async {
        // The operator logs in, in a tab of its own: the browser now holds a live session
        // cookie for the API.
        client.new_window(true).await.unwrap();
        let operator_tab = client.windows().await.unwrap().into_iter().find(|w| *w != rebinding_tab).unwrap();
        client.switch_to_window(operator_tab.clone()).await.unwrap();
        log_in(&client, &d.base).await;
        until(PATIENCE, "the session", || async {
            let open = client.execute("return document.getElementById('login').classList.contains('open')", vec![]);
            open.await.ok().filter(|v| v == &json!(false))
        })
        .await;

        // The attacker's page, in the same browser.
        client.goto(&format!("http://127.0.0.1:{attacker}/#{},{id}", d.base)).await.unwrap();
        let outcomes = until(PATIENCE, "the attacker's attempts", || async {
            let v = client.execute("return window.done || null", vec![]).await.ok()?;
            (!v.is_null()).then_some(v)
        })
        .await;

        // DNS rebinding: the page loaded under the attacker's name now reaches the daemon. The
        // API answers to no such Host: its status, queue, camera, intake and stills are all 421.
        client.switch_to_window(rebinding_tab.clone()).await.unwrap();
        let rebound = until(PATIENCE, "the rebinding page's attempts", || async {
            let v = client.execute("return window.done || null", vec![]).await.ok()?;
            (!v.is_null()).then_some(v)
        })
        .await;
        println!("rebinding outcomes: {rebound}");
        for pair in rebound.as_array().unwrap() {
            assert_eq!(pair[1], json!(421), "{} through a rebinding Host", pair[0]);
        }
        client.goto(&format!("http://rebind.test:{api_port}/")).await.unwrap();
        let page = client.source().await.unwrap();
        assert!(!page.contains("Operator token"), "the operator page is not served to a rebinding name");

        // The operator's own origin still works, with the same session.
        client.switch_to_window(operator_tab.clone()).await.unwrap();
        client.goto(&format!("{}/", d.base)).await.unwrap();
        let own = client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 fetch('/v1/enrollments').then((r) => r.status).then(done)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(own, json!(200), "the page's origin reads the queue with its session");
        client.close().await.unwrap();
        outcomes
    });
    println!("attacker outcomes: {outcomes}");
    for pair in outcomes.as_array().unwrap() {
        let (what, outcome) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        // No-cors answers are opaque to the page: whether they were refused is read below, on
        // the server. Everything the page could read was blocked.
        let readable_and_allowed = outcome.parse::<u16>().is_ok_and(|s| s < 400) || outcome.starts_with("loaded");
        assert!(!readable_and_allowed, "{what}: {outcome}");
    }
    // Nothing happened: the request is still in review, not approved or refused; the queue
    // holds only the one enrollment; no still was taken.
    let record = request(&sandbox.records(), &pk).clone();
    assert_eq!(record["status"], "VIDEOREVIEW", "{record}");
    let (_, list) = authed(&d, "GET", "/v1/enrollments", None);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let text = metrics_text(&d);
    let taken = text.lines().filter(|l| l.starts_with("kiosk_agent_captures_total{") && !l.ends_with(" 0"));
    assert_eq!(taken.count(), 0, "no still was taken:\n{text}");
}

/// The daemon's metrics as text.
fn metrics_text(d: &crate::api::Daemon) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new().get(format!("{}/metrics", d.base)).bearer_auth(TOKEN).send().await.unwrap();
        resp.text().await.unwrap()
    })
}
