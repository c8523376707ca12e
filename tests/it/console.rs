//! The console (`GET /console`) in a real browser: Debian's headless Chromium driven through
//! chromedriver's WebDriver HTTP API (plain reqwest). The page asks for the token, lists a
//! webhook subscription this test made, shows its backlog growing while its sink is down, and
//! cancels it. With `HERALD_SCREENSHOT=docs/console.png` the test writes its screenshot there
//! (the README's image). Without chromium it is skipped loudly, unless `HERALD_REQUIRE_TOOLS=1`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::*;
use crate::publish::{TICK_ACTION, tick};
use crate::sink::{Behavior, Sink};

const TOKEN: &str = "console-token";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether chromium and chromedriver are here; fails instead when tools are required.
fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let how = "apt-get install -y chromium chromium-driver";
    if std::env::var("HERALD_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("chromium is not installed and HERALD_REQUIRE_TOOLS=1: install it with `{how}`");
    }
    eprintln!("\n\n*** SKIPPED: chromium is not installed ({how}) ***\n");
    false
}

/// A chromedriver process, killed when dropped.
struct Chromedriver {
    child: Child,
    base: String,
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Chromedriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = client.get(format!("{}/status", driver.base)).send().await;
            if let Ok(response) = status
                && let Ok(text) = response.text().await
                && let Ok(value) = serde_json::from_str::<Value>(&text)
                && value["value"]["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session.
#[derive(Clone)]
struct Browser {
    client: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &Chromedriver) -> Browser {
        let client = http_client();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1000,700"],
            },
        }}});
        let response = client
            .post(format!("{}/session", driver.base))
            .header("Content-Type", "application/json")
            .body(capabilities.to_string())
            .send()
            .await
            .expect("new session");
        let text = response.text().await.expect("session answer");
        let value: Value = serde_json::from_str(&text).expect("session JSON");
        let id = value["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {value}"));
        Browser {
            client,
            session: format!("{}/session/{id}", driver.base),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("WebDriver answers");
        let status = response.status();
        let text = response.text().await.expect("WebDriver answers");
        let value: Value = serde_json::from_str(&text).expect("WebDriver JSON");
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e && !e.closest('[hidden]') ? e.textContent : null;";
        let value = self
            .post("/execute/sync", json!({"script": script, "args": [css]}))
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Waits (up to 20 s) until the text at `css` satisfies `ok`; returns it.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if let Some(text) = &text
                && ok(text)
            {
                return text.clone();
            }
            assert!(Instant::now() < deadline, "{what}: `{css}` shows {text:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let value = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 PNG"))
            .expect("a PNG")
    }

    async fn close(&self) {
        let _ = self.client.delete(&self.session).send().await;
    }
}

async fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("herald answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn publish_ticks(server: &TestServer, from: u64, count: u64) {
    for n in from..from + count {
        let response = server
            .client
            .post(server.url("/api/v1/sources/default/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/xml")
            .header("Herald-Action", TICK_ACTION)
            .body(tick(n))
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status().as_u16(), 202);
    }
}

fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

#[tokio::test]
async fn the_console_lists_a_failing_subscription_its_growing_backlog_and_cancels_it() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start_with(|config| config.api_token = Some(TOKEN.into())).await;
    let sink = Sink::start().await;
    sink.behave("down", Behavior::AlwaysFail);
    let (status, made) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/subscriptions",
        Some(json!({"source": "default", "url": sink.url("down")})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().expect("an id").to_owned();

    let driver = Chromedriver::start().await;
    let browser = Browser::open(&driver).await;
    // The session ends whatever happens in the test; its panic is raised after.
    let outcome = tokio::spawn(drive(browser.clone(), server.base.clone(), id.clone())).await;
    let screenshot = match outcome {
        Ok(screenshot) => screenshot,
        Err(err) => {
            browser.close().await;
            std::panic::resume_unwind(err.into_panic());
        }
    };
    browser.close().await;
    drop(driver);

    let (_, after) = api(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(after["status"], "ended", "the API agrees: {after}");
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    if let Ok(path) = std::env::var("HERALD_SCREENSHOT") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the screenshot's folder");
        }
        std::fs::write(&path, &screenshot).expect("screenshot written");
        eprintln!("console screenshot written to {}", path.display());
    }
    let _ = (sink, server);
}

/// The browser's part; returns the screenshot taken while the subscription was failing.
async fn drive(browser: Browser, base: String, id: String) -> Vec<u8> {
    let server = TestServer::remote(&base);
    browser.go(&format!("{base}/console")).await;

    // No data without the token: the page asks for it.
    let message = browser
        .wait_text("#token-message", "the token form", |text| {
            text.contains("401")
        })
        .await;
    assert!(message.contains("token"), "{message}");
    assert_eq!(
        browser.text("#data").await,
        None,
        "no data shown without the token"
    );
    browser.type_into("#token", TOKEN).await;
    browser.click("#token-submit").await;

    let row = format!("#subscriptions tr[data-id=\"{id}\"]");
    browser
        .wait_text(
            &format!("{row} td.status"),
            "the subscription's row",
            |text| text == "active",
        )
        .await;
    browser
        .wait_text(&format!("{row} td.endpoint"), "its endpoint", |text| {
            text.ends_with("/down")
        })
        .await;

    // The sink is down: the backlog shown grows with what is published.
    publish_ticks(&server, 1, 3).await;
    let backlog = format!("{row} td.backlog");
    let first = number(
        &browser
            .wait_text(&backlog, "backlog of 3", |t| number(t) >= 3)
            .await,
    );
    publish_ticks(&server, 4, 4).await;
    let grown = number(
        &browser
            .wait_text(&backlog, "backlog grows to 7", |t| number(t) >= 7)
            .await,
    );
    assert!(grown > first, "backlog {first} then {grown}");
    browser
        .wait_text(&format!("{row} td.error"), "the last error", |t| {
            t.contains("503")
        })
        .await;
    browser
        .wait_text(&format!("{row} td.attempts"), "attempts", |t| {
            number(t) >= 1
        })
        .await;
    browser
        .wait_text("#sources td.name", "the source", |t| t == "default")
        .await;

    // The README's picture: the failing subscription and its backlog.
    let screenshot = browser.screenshot().await;

    // Cancel it from the page (accepting the confirmation).
    browser.click(&format!("{row} button.cancel")).await;
    browser.post("/alert/accept", json!({})).await;
    browser
        .wait_text(&format!("{row} td.status"), "ended", |t| {
            t.starts_with("ended")
        })
        .await;
    assert_eq!(
        browser.text(&format!("{row} button.cancel")).await,
        None,
        "no cancel button on an ended subscription"
    );
    screenshot
}

#[tokio::test]
async fn the_console_page_is_served_under_a_strict_policy_and_its_data_needs_the_token() {
    let server = TestServer::start_with(|config| config.api_token = Some(TOKEN.into())).await;
    let page = server
        .client
        .get(server.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(header("cache-control"), "no-store");
    let policy = header("content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/console/app.js\""), "{html}");
    for asset in ["/console/app.js", "/console/app.css"] {
        let response = server.client.get(server.url(asset)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        assert!(response.headers().contains_key("content-security-policy"));
    }

    // The calls the page makes: 401 without the token, 200 with it.
    for path in ["/api/v1/overview", "/api/v1/subscriptions?limit=500"] {
        let refused = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(refused.status().as_u16(), 401, "{path}");
        let (status, body) = api(&server, reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let fake = "/api/v1/subscriptions/0193a8b0-0000-7000-8000-000000000000";
    let refused = server.client.delete(server.url(fake)).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let (_, overview) = api(&server, reqwest::Method::GET, "/api/v1/overview", None).await;
    assert_eq!(overview["sources"][0]["name"], "default", "{overview}");
    assert_eq!(overview["sources"][0]["active"], 0, "{overview}");
    assert_eq!(overview["deliveries"]["delivered"], 0, "{overview}");
    assert!(overview["channels"].is_object(), "{overview}");
    assert!(overview["agents"].is_array(), "{overview}");
}
