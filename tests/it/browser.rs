//! The operator page in a real browser: Debian's chromium, headless, driven through
//! chromedriver (both installed by `scripts/setup-debian test`) against `kiosk-agent run` with
//! the sandbox and synthetic cameras. Screenshots go to `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::api::{start, TOKEN};
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

/// Polls `f` until it gives a value, for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn an_operator_enrolls_a_customer_from_the_page() {
    let chromedriver = which("chromedriver").expect("chromedriver is installed by scripts/setup-debian test");
    let chromium = which("chromium").expect("chromium is installed by scripts/setup-debian test");
    let sandbox = Sandbox::start(0);
    let d = start(sandbox.addr.port(), "");
    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let shots = screenshots();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1920,1080", "--user-data-dir=".to_owned() + d.env.dir.path().join("chrome").to_str().unwrap()],
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = until(Duration::from_secs(20), "chromedriver", || {
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
        client.goto(&format!("{}/", d.base)).await.unwrap();

        // Without a session the page asks for the token.
        let token = client.wait().for_element(Locator::Id("token")).await.unwrap();
        until(Duration::from_secs(10), "the login dialog", || async {
            token.is_displayed().await.ok().filter(|shown| *shown)
        })
        .await;
        token.send_keys(TOKEN).await.unwrap();
        client.find(Locator::Css("#login-form button")).await.unwrap().click().await.unwrap();

        // The preview moves: two screenshots of it a moment apart differ.
        let preview = client.find(Locator::Id("preview-face")).await.unwrap();
        until(Duration::from_secs(20), "the preview", || async {
            let w: Option<u64> = client
                .execute("return document.getElementById('preview-face').naturalWidth", vec![])
                .await
                .ok()
                .and_then(|v| v.as_u64());
            w.filter(|w| *w > 0)
        })
        .await;
        let first = preview.screenshot().await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let second = preview.screenshot().await.unwrap();
        assert_ne!(first, second, "the live preview changes between frames");
        std::fs::write(shots.join("1-preview.png"), client.screenshot().await.unwrap()).unwrap();

        // Two stills, each judged; the document photo is cut from the front, not taken: it has
        // no button of its own and shows once the front passes.
        assert!(
            client.find(Locator::Css(".shot[data-slot=document_photo] button")).await.is_err(),
            "the document photo has no button"
        );
        for slot in ["document_front", "document_owner"] {
            client.find(Locator::Css(&format!(".shot[data-slot={slot}] button"))).await.unwrap().click().await.unwrap();
            until(Duration::from_secs(30), slot, || async {
                client.find(Locator::Css(&format!(".shot[data-slot={slot}][data-taken=pass]"))).await.ok()
            })
            .await;
        }
        let (w, h) = until(Duration::from_secs(10), "the document photo's thumbnail", || async {
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
        assert!(h > w && w > 0, "the photo is a portrait cut from the front, {w}x{h}");

        // The customer's data.
        for (id, value) in [
            ("phone", "+34699999999"),
            ("email", "ana.garcia@example.com"),
            ("given_name", "Ana"),
            ("surname_1", "García"),
            ("serial_number", "12345678Z"),
        ] {
            client.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
        }
        client.find(Locator::Id("accept")).await.unwrap().click().await.unwrap();

        // Three seconds of video, with the countdown running.
        client.find(Locator::Id("record")).await.unwrap().click().await.unwrap();
        until(Duration::from_secs(10), "the countdown", || async {
            let text = client.find(Locator::Id("countdown")).await.ok()?.text().await.ok()?;
            text.contains("left").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        client.find(Locator::Id("stop")).await.unwrap().click().await.unwrap();
        until(Duration::from_secs(20), "the recording", || async {
            let text = client.find(Locator::Id("video-result")).await.ok()?.text().await.ok()?;
            text.contains("recorded").then_some(())
        })
        .await;
        std::fs::write(shots.join("2-ready.png"), client.screenshot().await.unwrap()).unwrap();

        // Submit, and watch the row reach review.
        client.find(Locator::Id("submit")).await.unwrap().click().await.unwrap();
        let message = until(Duration::from_secs(30), "the submission", || async {
            let text = client.find(Locator::Id("message")).await.ok()?.text().await.ok()?;
            text.starts_with("Queued").then_some(text)
        })
        .await;
        let prefix = message.trim_start_matches("Queued: ").split('.').next().unwrap().to_owned();
        until(Duration::from_secs(60), "the row in review", || async {
            let rows = client.find_all(Locator::Css("#queue tr")).await.ok()?;
            for row in rows {
                let text = row.text().await.ok()?;
                if text.starts_with(&prefix) && text.contains("in_review") {
                    return Some(());
                }
            }
            None
        })
        .await;
        std::fs::write(shots.join("3-in-review.png"), client.screenshot().await.unwrap()).unwrap();

        // Nothing personal stays in the browser after the submission.
        let left = client
            .execute(
                "return [localStorage.length, sessionStorage.length, document.getElementById('email').value, \
                 document.querySelectorAll('.shot img[src]').length]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(left, json!([0, 0, "", 0]), "storage, form and thumbnails are cleared");
        client.close().await.unwrap();
    });
    // What the sandbox received is what the cameras captured.
    let records = sandbox.records();
    let requests = records["requests"].as_array().map(Vec::len).unwrap_or(0);
    assert!(requests >= 1, "{records}");
    // The photo the server got is the portrait cut from the front: a part of it, so smaller.
    let images = &records["requests"][0]["images"];
    let size = |slot: &str| images[slot]["size"].as_u64().unwrap_or_else(|| panic!("no {slot}: {records}"));
    assert!(size("document_photo") < size("document_front"), "{images}");
}
