//! The README's walkthrough, as written: its Subscribe message, its publish, and its Renew,
//! GetStatus and Unsubscribe messages are taken from README.md and sent to a real herald (its
//! addresses swapped for the test's), so the README cannot drift from what herald accepts.

use std::time::Duration;

use crate::harness::*;
use crate::sink::Sink;

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("README.md has no {start:?}"))
        + start.len();
    let to = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("README.md: no {end:?} after {start:?}"));
    &text[from..from + to]
}

/// The text of a shell argument in single quotes after `prefix` on `line`.
fn quoted<'a>(line: &'a str, prefix: &str) -> &'a str {
    between(line, &format!("{prefix}'"), "'")
}

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let walkthrough = between(&readme, "## Try it", "\n## ");
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let localize = |text: &str| {
        text.replace("http://127.0.0.1:9000/notify", &sink.url("notify"))
            .replace("http://127.0.0.1:8080", &server.base)
    };

    // Subscribe, and the identifier as the README's pipeline picks it out.
    let subscribe = localize(between(walkthrough, "<<'EOF' |", "\nEOF"));
    let subscribe = subscribe
        .split_once('\n')
        .map_or("", |(_, envelope)| envelope);
    let reply = server
        .client
        .post(server.url("/eventing/default"))
        .header("Content-Type", "application/soap+xml; charset=utf-8")
        .body(subscribe.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let text = reply.text().await.unwrap();
    let id = between(&text, "<hrd:SubscriptionId>", "<").to_owned();
    assert!(id.starts_with("uuid:"), "{text}");

    // Publish: the notification reaches the sink.
    let publish = between(
        walkthrough,
        "curl -s http://127.0.0.1:8080/api/v1/sources",
        "\n#",
    );
    let action = between(publish, "Herald-Action: ", "'");
    let payload = quoted(publish, "--data ");
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events"))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", action)
        .body(payload.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let notifications = sink
        .wait_accepted("notify", 1, Duration::from_secs(10))
        .await;
    assert!(
        notifications[0].body.contains(payload),
        "{}",
        notifications[0].body
    );

    // Each `manage` line, through the README's envelope, answers as its comment says.
    let template = localize(between(walkthrough, "--data-binary @- <<EOF\n", "\nEOF"));
    let calls: Vec<&str> = walkthrough
        .lines()
        .filter(|line| line.starts_with("manage ") && !line.starts_with("manage()"))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for call in calls {
        let (command, expected) = call
            .split_once('#')
            .expect("a comment says what comes back");
        let mut words = command.split_whitespace();
        let operation = words.nth(1).expect("an operation");
        let body = quoted(command, &format!("{operation} "));
        let envelope = template
            .replace("$1", operation)
            .replace("$2", body)
            .replace("$ID", &id)
            .replace("$RANDOM", "1");
        let reply = post_soap(
            &server.client,
            &server.url("/eventing/default/subscriptions"),
            Soap::V12,
            None,
            envelope,
        )
        .await;
        let expected = expected.trim();
        if expected.contains("fault") {
            let fault = reply.fault();
            let subcode = fault.subcode.map(|(_, local)| local).unwrap_or_default();
            assert!(expected.contains(&subcode), "{call}: {}", reply.text);
        } else {
            assert_eq!(reply.status, 200, "{call}: {}", reply.text);
            let (_, element) = reply.body_element().expect("a body");
            assert!(expected.starts_with(&element), "{call}: {}", reply.text);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_readmes_context_service_and_callback_work_as_written() {
    use herald::config::{Config, ServeArgs};

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = between(&readme, "## Callback contexts", "\n## ");
    let backend = crate::contexts::Backend::start().await;
    let sink = Sink::start().await;
    // The configuration block, its backend swapped for the test's.
    let toml = between(section, "```toml\n", "```")
        .replace("http://127.0.0.1:9100/ShoppingCart", &backend.url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, toml).unwrap();
    let args = ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    };
    let contexts = Config::load(&args)
        .expect("the README's configuration loads")
        .contexts;
    assert_eq!(contexts.len(), 1);
    let server = TestServer::start_with(move |config| config.contexts = contexts).await;

    // An instance with a callback endpoint (the sink), through the gateway.
    let context_ns = "http://schemas.microsoft.com/ws/2008/02/context";
    let request = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://www.w3.org/2005/08/addressing\"><s:Header><a:Action>urn:x:AddItem</a:Action><CallbackContext xmlns=\"{context_ns}\"><CallbackEndpointReference><a:Address>{}</a:Address></CallbackEndpointReference></CallbackContext></s:Header><s:Body><AddItem xmlns=\"urn:x\"/></s:Body></s:Envelope>",
        sink.url("customer")
    );
    let response = server
        .client
        .post(server.url("/contexts/cart"))
        .header("Content-Type", "application/soap+xml")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let instance = response.headers()["herald-instance-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // The README's curl call: its path and its JSON body, as written.
    let after = &section[section
        .find("queues a callback")
        .expect("the callback paragraph")..];
    let curl = between(after, "```sh\n", "```");
    let path = between(curl, "http://127.0.0.1:8080", " ").replace("$INSTANCE", &instance);
    let body = between(curl, "-d '", "'");
    let response = server
        .client
        .post(server.url(&path))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let received = sink
        .wait_accepted("customer", 1, Duration::from_secs(10))
        .await;
    assert!(received[0].body.contains("<customerId>571</customerId>"));
    server.stop().await;
}

/// A command's flags, after its verb.
fn flags(args: &[String]) -> Vec<&str> {
    args[1..].iter().map(String::as_str).collect()
}

/// The `cargo run --release -- …` command of each shell block of a README section, as the
/// binary's arguments (a leading `echo '…' |` kept as its standard input), with the result
/// lines the block shows (`# …`).
fn cli_blocks(section: &str) -> Vec<(Vec<String>, Option<String>, Vec<String>)> {
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| {
            let block = block.split("```").next()?;
            let (shown, command): (Vec<&str>, Vec<&str>) =
                block.lines().partition(|line| line.starts_with("# "));
            let command = command.join("\n").replace("\\\n", " ");
            let (stdin, command) = match command.split_once("| cargo run --release -- ") {
                Some((echo, command)) => (Some(quoted(echo, "echo ").to_owned()), command),
                None => (None, command.strip_prefix("cargo run --release -- ")?),
            };
            let args = command.split_whitespace().map(str::to_owned).collect();
            let shown = shown.iter().map(|line| line[2..].to_owned()).collect();
            Some((args, stdin, shown))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_first_minute_works_as_written() {
    use crate::cli::{SinkProcess, fast_retrying_herald, herald};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let minute = between(&readme, "### The first minute", "\n## ");
    let blocks = cli_blocks(minute);
    let verbs: Vec<&str> = blocks.iter().map(|(args, ..)| args[0].as_str()).collect();
    assert_eq!(verbs, ["serve", "sink", "subscribe", "publish", "status"]);
    // herald as the README starts it (its retries made fast), the sink with the README's flags.
    let (_store, process) = fast_retrying_herald(&flags(&blocks[0].0));
    let sink = SinkProcess::start(&flags(&blocks[1].0));
    let mut reference = String::new();
    for (args, stdin, shown) in &blocks[2..] {
        let mut args: Vec<String> = args
            .iter()
            .map(|arg| arg.replace("http://127.0.0.1:9000", &sink.base))
            .collect();
        if args[0] == "status" {
            args[1] = reference.clone();
            // As the README tells it: after the retry was taken.
            sink.wait_for("the retry", |lines| {
                lines.iter().any(|l| l.starts_with("#2 "))
            })
            .await;
        }
        args.extend(["--url".to_owned(), process.base.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = herald(&args, &[], stdin.as_deref()).await;
        let out = run.ok().to_owned();
        // Each result line as the README shows it, up to the first id or time in it.
        let stable = |line: &str| {
            line.split(|c: char| c == ':' || c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let printed: Vec<String> = out.lines().map(stable).collect();
        let shown: Vec<String> = shown.iter().map(|line| stable(line)).collect();
        assert_eq!(printed, shown, "{args:?}:\n{out}");
        if let Some(line) = out.lines().find(|line| line.starts_with("reference:")) {
            reference = line.split_whitespace().nth(1).unwrap().to_owned();
        }
    }
    // The sink's printout as the README shows it: refused once, then taken.
    let shown: Vec<String> = between(minute, "```\n#1 POST", "```")
        .lines()
        .map(str::to_owned)
        .collect();
    let lines = sink
        .wait_for("the retry", |lines| {
            lines.iter().filter(|l| l.starts_with('#')).count() >= 2
        })
        .await;
    assert_eq!(format!("#1 POST{}", shown[0]), lines[0]);
    assert_eq!(shown[1..], lines[1..shown.len()], "{lines:#?}");
}
