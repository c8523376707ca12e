//! The command-line client, as a newcomer runs it: the real `herald` binary's `subscribe`,
//! `publish`, `status`, `renew`, `unsubscribe` and `sink` verbs against a real herald process on
//! loopback, the sink a process too, its printout read line by line.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const ORDER: &str = r#"<o:order xmlns:o="urn:example:orders" id="A-17" total="150"/>"#;
const CREATED: &str = "urn:example:orders/created";

/// What one run of the client printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "the client failed: {self:?}");
        &self.stdout
    }

    /// stdout as the one JSON object `--json` prints.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|err| panic!("not one JSON object ({err}): {self:?}"))
    }
}

/// Runs `herald ARGS` (with `env` set and `stdin` fed) and waits for it to exit.
pub async fn herald(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Process::command();
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("herald runs");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("stdin written");
        }
        let output = child.wait_with_output().expect("herald exits");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the client ran")
}

/// `herald sink` as a process, its stdout kept line by line.
pub struct SinkProcess {
    child: Child,
    pub base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SinkProcess {
    pub fn start(extra: &[&str]) -> SinkProcess {
        let mut child = Process::command()
            .args(["sink", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("herald sink starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("ready line");
        let ready = first.trim();
        let base = match ready.strip_prefix("sink listening on ") {
            Some(base) => base.to_owned(),
            None => serde_json::from_str::<Value>(ready)
                .ok()
                .and_then(|ready| ready["listening"].as_str().map(str::to_owned))
                .unwrap_or_else(|| panic!("no ready line: {first:?}")),
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        SinkProcess { child, base, lines }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `done` holds for what the sink printed; returns the lines.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "the sink never printed {what}:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The index of the first line holding `needle` at or after `from`.
fn line_with(lines: &[String], needle: &str, from: usize) -> Option<usize> {
    lines
        .iter()
        .skip(from)
        .position(|line| line.contains(needle))
        .map(|at| at + from)
}

/// A herald process whose sources retry every 50–100 ms, and its store.
pub fn fast_retrying_herald(extra: &[&str]) -> (TestStore, Process) {
    let store = TestStore::embedded();
    let config = store.data_dir().join("fast-retry.toml");
    std::fs::write(
        &config,
        "[sources.default]\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.1S\"\n",
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let process = Process::start_with(&store, &args);
    (store, process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_soap_version_is_subscribed_published_to_and_managed_from_the_command_line() {
    let (_store, process) = fast_retrying_herald(&[]);
    let url = process.base.as_str();
    let sink = SinkProcess::start(&[]);
    let cases = [("2011", "1.2"), ("2004-08", "1.1"), ("2004-01", "1.2")];
    let mut references = Vec::new();
    for (version, soap) in cases {
        let notify_to = sink.url(&format!("notify/{version}"));
        let run = herald(
            &[
                "subscribe",
                "default",
                "--notify-to",
                &notify_to,
                "--version",
                version,
                "--soap",
                soap,
                "--expires",
                "PT10M",
                "--url",
                url,
                "--json",
            ],
            &[],
            None,
        )
        .await;
        let subscribed = run.json();
        assert_eq!(subscribed["version"], version.replace('-', "/"), "{run:?}");
        assert_eq!(subscribed["expires"], "PT10M");
        let reference = subscribed["reference"].as_str().unwrap().to_owned();
        assert!(reference.starts_with("uuid:"), "{run:?}");
        references.push(reference);
    }
    // A person's output names the manager and the reference.
    let run = herald(
        &[
            "subscribe",
            "default",
            "--notify-to",
            &sink.url("people"),
            "--url",
            url,
        ],
        &[],
        None,
    )
    .await;
    let text = run.ok();
    assert!(
        text.contains(&format!("manager:    {url}/eventing/default/subscriptions")),
        "{text}"
    );
    assert!(text.contains("reference:  uuid:"), "{text}");

    // Filtered: by topic (2004/08) and by XPath with a bound prefix (2011).
    let mut filtered = Vec::new();
    for (path, filter) in [
        (
            "topic",
            vec![
                "--version",
                "2004-08",
                "--filter-topic",
                "urn:example:orders/ship*",
            ],
        ),
        (
            "xpath",
            vec![
                "--filter-xpath",
                "/o:order[@id='B-2']",
                "--namespace",
                "o=urn:example:orders",
            ],
        ),
    ] {
        let notify_to = sink.url(path);
        let args = [
            vec![
                "subscribe",
                "default",
                "--notify-to",
                &notify_to,
                "--url",
                url,
                "--json",
            ],
            filter,
        ]
        .concat();
        let run = herald(&args, &[], None).await;
        filtered.push((path, run.json()["reference"].as_str().unwrap().to_owned()));
    }

    // Publish from standard input, then from a file.
    let run = herald(
        &["publish", "default", "--action", CREATED, "--url", url],
        &[],
        Some(ORDER),
    )
    .await;
    assert!(run.ok().starts_with("published uuid:"), "{run:?}");
    assert!(run.stdout.contains("(seq 1)"), "{run:?}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"<o:order xmlns:o="urn:example:orders" id="B-2"/>"#,
    )
    .unwrap();
    let run = herald(
        &[
            "publish",
            "default",
            "--file",
            file.path().to_str().unwrap(),
            "--action",
            "urn:example:orders/shipped",
            "--url",
            url,
            "--json",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(run.json()["events"][0]["seq"], 2, "{run:?}");

    // Each subscriber's notifications, printed by the sink with their action and event.
    for (version, soap) in cases {
        let path = format!("POST /notify/{version} -> 200");
        let lines = sink
            .wait_for(&format!("two notifications to {version}"), |lines| {
                lines.iter().filter(|line| line.contains(&path)).count() == 2
            })
            .await;
        let first = line_with(&lines, &path, 0).unwrap();
        assert_eq!(
            lines[first + 1].trim(),
            format!("SOAP {soap}  action: {CREATED}"),
            "{lines:#?}"
        );
        assert_eq!(lines[first + 2].trim(), ORDER);
        let second = line_with(&lines, &path, first + 1).unwrap();
        assert!(lines[second + 1].ends_with("action: urn:example:orders/shipped"));
        assert!(lines[second + 2].contains("id=\"B-2\""));
    }

    // The filtered subscriptions passed the first event by and took the second.
    for (path, reference) in &filtered {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = herald(&["status", reference, "--url", url, "--json"], &[], None)
                .await
                .json();
            if status["subscription"]["cursor"] == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{path}: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lines = sink.lines();
        let received: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains(&format!("POST /{path} ")))
            .collect();
        assert_eq!(received.len(), 1, "{path}: {lines:#?}");
        let at = line_with(&lines, &format!("POST /{path} "), 0).unwrap();
        assert!(lines[at + 1].ends_with("action: urn:example:orders/shipped"));
    }

    for (reference, (version, _)) in references.iter().zip(cases) {
        let args = |verb: &'static str| vec![verb, reference.as_str(), "--url", url];
        // Status: active, everything delivered.
        let run = herald(&args("status"), &[], None).await;
        let text = run.ok();
        assert!(text.starts_with(&format!("{reference}  active")), "{text}");
        assert!(
            text.contains("delivered:  up to event 2 of 2 (backlog 0)"),
            "{text}"
        );
        let before = herald(&[args("status"), vec!["--json"]].concat(), &[], None)
            .await
            .json();
        assert_eq!(before["status"], "active");
        if version == "2004-01" {
            assert!(before["expires"].is_null(), "2004/01 has no GetStatus");
        } else {
            assert!(before["expires"].as_str().unwrap().starts_with("PT"));
        }
        let at = |value: &Value| {
            value["expires_at"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        };

        // Renew: the expiry moves.
        let run = herald(
            &[args("renew"), vec!["--expires", "PT2H", "--json"]].concat(),
            &[],
            None,
        )
        .await;
        let renewed = run.json();
        assert_eq!(renewed["expires"], "PT2H", "{run:?}");
        let moved = at(&renewed).duration_since(at(&before));
        assert!(
            moved > jiff::SignedDuration::from_mins(100),
            "{version}: the expiry moved by {moved:?}"
        );
        let run = herald(
            &[args("renew"), vec!["--expires", "PT3H"]].concat(),
            &[],
            None,
        )
        .await;
        assert!(
            run.ok()
                .starts_with(&format!("renewed {reference}: expires PT3H, at "))
        );

        // Unsubscribe: the status says it ended.
        let run = herald(&args("unsubscribe"), &[], None).await;
        assert_eq!(run.ok().trim(), format!("unsubscribed {reference}"));
        let run = herald(&args("status"), &[], None).await;
        assert!(
            run.ok()
                .starts_with(&format!("{reference}  ended (unsubscribed)")),
            "{run:?}"
        );
        let ended = herald(&[args("status"), vec!["--json"]].concat(), &[], None)
            .await
            .json();
        assert_eq!(ended["status"], "ended");
        assert_eq!(ended["end_reason"], "unsubscribed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_fails_as_told_and_herald_retries_until_it_delivers() {
    let (_store, process) = fast_retrying_herald(&[]);
    let url = process.base.as_str();
    let sink = SinkProcess::start(&["--fail", "2"]);
    let run = herald(
        &[
            "subscribe",
            "default",
            "--notify-to",
            &sink.url("flaky"),
            "--soap",
            "1.1",
            "--version",
            "2004-08",
            "--url",
            url,
            "--json",
        ],
        &[],
        None,
    )
    .await;
    let reference = run.json()["reference"].as_str().unwrap().to_owned();
    herald(
        &["publish", "default", "-a", CREATED, "--url", url],
        &[],
        Some(ORDER),
    )
    .await
    .ok();
    let lines = sink
        .wait_for("the delivery after two failures", |lines| {
            lines.iter().any(|line| line.contains("-> 200"))
        })
        .await;
    let heads: Vec<&String> = lines.iter().filter(|l| l.starts_with('#')).collect();
    assert_eq!(heads.len(), 3, "{lines:#?}");
    assert_eq!(heads[0].as_str(), "#1 POST /flaky -> 503 (--fail: 1 of 2)");
    assert_eq!(heads[1].as_str(), "#2 POST /flaky -> 503 (--fail: 2 of 2)");
    assert_eq!(heads[2].as_str(), "#3 POST /flaky -> 200");
    // Every attempt carried the same notification.
    let events: Vec<&String> = lines.iter().filter(|l| l.trim() == ORDER).collect();
    assert_eq!(events.len(), 3, "{lines:#?}");

    // The failures are in the status: attempts counted, then cleared on delivery.
    let status = herald(&["status", &reference, "--url", url, "--json"], &[], None)
        .await
        .json();
    assert_eq!(status["subscription"]["cursor"], 1, "{status}");
    assert_eq!(status["subscription"]["backlog"], 0, "{status}");

    // --json: one object a request.
    let json_sink = SinkProcess::start(&["--json", "--fail", "1"]);
    herald(
        &[
            "subscribe",
            "default",
            "--notify-to",
            &json_sink.url("j"),
            "--url",
            url,
        ],
        &[],
        None,
    )
    .await
    .ok();
    herald(
        &["publish", "default", "-a", CREATED, "--url", url],
        &[],
        Some(ORDER),
    )
    .await
    .ok();
    let lines = json_sink
        .wait_for("two JSON lines", |lines| lines.len() >= 2)
        .await;
    let first: Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    let second: Value = serde_json::from_str(&lines[1]).expect("a JSON line");
    assert_eq!(first["status"], 503);
    assert_eq!(
        (second["status"].clone(), second["n"].clone()),
        (200.into(), 2.into())
    );
    assert_eq!(second["kind"], "soap");
    assert_eq!(second["action"], CREATED);
    assert_eq!(second["event"], ORDER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_printed_clearly_with_a_non_zero_exit() {
    let (_store, process) = fast_retrying_herald(&["--api-token", "s3cret"]);
    let url = process.base.as_str();

    // An unknown subscription: the JSON API's problem.
    let unknown = "uuid:00000000-0000-4000-8000-000000000000";
    let token = [("HERALD_TOKEN", "s3cret")];
    let run = herald(&["status", unknown, "--url", url], &token, None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "herald: Unknown subscription (HTTP 404): no subscription with this identifier"
    );
    let run = herald(
        &["unsubscribe", unknown, "--url", url, "--json"],
        &token,
        None,
    )
    .await;
    assert_eq!(run.code, 1);
    let error = &run.json()["error"];
    assert_eq!(
        (error["kind"].as_str(), error["status"].as_u64()),
        (Some("problem"), Some(404))
    );

    // Without the token the JSON API refuses; HERALD_API_TOKEN (the server's name) works too.
    let run = herald(
        &["publish", "default", "-a", CREATED, "--url", url],
        &[],
        Some(ORDER),
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Unauthorized (HTTP 401)"), "{run:?}");
    let run = herald(
        &["publish", "default", "-a", CREATED, "--url", url],
        &[("HERALD_API_TOKEN", "s3cret")],
        Some(ORDER),
    )
    .await;
    assert!(run.ok().starts_with("published uuid:"));
    // A missing action is herald's 400.
    let run = herald(&["publish", "default", "--url", url], &token, Some(ORDER)).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Missing action (HTTP 400)"), "{run:?}");

    // A SOAP fault: its subcode and reason.
    let run = herald(
        &[
            "subscribe",
            "default",
            "--notify-to",
            "http://127.0.0.1:9/x",
            "--expires",
            "soon",
            "--url",
            url,
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("herald: SOAP fault wse:UnsupportedExpirationValue (s:Sender): "),
        "{run:?}"
    );
    let run = herald(
        &[
            "subscribe",
            "nosuch",
            "--notify-to",
            "http://127.0.0.1:9/x",
            "--url",
            url,
            "--json",
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["kind"], "soap-fault", "{run:?}");

    // Nobody at the URL: exit 3, and why.
    // Bound but not listening, for the rest of the test: connections are refused, and no other
    // test's server can take the port.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    let run = herald(&["status", unknown, "--url", &nobody], &[], None).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach herald at {nobody}"))
    );
    assert!(run.stderr.contains("Connection refused"), "{run:?}");
    // Not a URL at all: exit 2.
    let run = herald(&["status", unknown, "--url", "localhost:8080"], &[], None).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--url must be an absolute http(s) URL"));
    // HERALD_URL is read.
    let run = herald(&["status", unknown], &[("HERALD_URL", &nobody)], None).await;
    assert_eq!(run.code, 3, "{run:?}");
}
