//! The SOAP echo server of the Subscribe baseline (scenario 3) and the invocations (scenario
//! 10): axum and tokio like herald, in its own process as herald is, parsing each request with
//! roxmltree and answering a fixed SubscribeResponse, with no store.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::floor::Durable;
use crate::process::spawn_until_ready;

const WSA: &str = "http://www.w3.org/2005/08/addressing";

/// The echo server's answer: a SubscribeResponse as herald writes one, with RelatesTo.
pub fn echo_response(relates_to: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}" xmlns:wse="http://www.w3.org/2011/03/ws-evt" xmlns:hrd="urn:herald:eventing"><s:Header><wsa:Action>http://www.w3.org/2011/03/ws-evt/SubscribeResponse</wsa:Action><wsa:MessageID>urn:uuid:6187a3b2-adf6-490e-aa8b-0e39f548cc95</wsa:MessageID><wsa:RelatesTo>{relates_to}</wsa:RelatesTo></s:Header><s:Body><wse:SubscribeResponse><wse:SubscriptionManager><wsa:Address>http://127.0.0.1/eventing/default/subscriptions</wsa:Address><wsa:ReferenceParameters><hrd:SubscriptionId>uuid:b0cac8d6-69af-4c21-94e3-5895b0df4971</hrd:SubscriptionId></wsa:ReferenceParameters></wse:SubscriptionManager><wse:GrantedExpires>PT1H</wse:GrantedExpires></wse:SubscribeResponse></s:Body></s:Envelope>"#
    )
}

/// Parses the request envelope with roxmltree (as herald's decoder does) and answers a fixed
/// SubscribeResponse: a SOAP server with no store.
async fn echo(body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(document) = roxmltree::Document::parse(text) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(message_id) = message_id(&document) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    (
        [(CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        echo_response(&roxmltree_escape(message_id)),
    )
        .into_response()
}

/// The envelope's MessageID ("" when it has none), or None when it is not an Envelope.
fn message_id<'a>(document: &'a roxmltree::Document) -> Option<&'a str> {
    if document.root_element().tag_name().name() != "Envelope" {
        return None;
    }
    let message_id = document
        .descendants()
        .find(|node| node.has_tag_name((WSA, "MessageID")))
        .and_then(|node| node.text())
        .unwrap_or("");
    Some(message_id.trim())
}

/// A Subscribe's MessageID and its NotifyTo's address: what the store's floor
/// ([`crate::floor`]) keeps.
pub fn subscribe_fields<'a>(document: &'a roxmltree::Document) -> Option<(&'a str, &'a str)> {
    let message_id = message_id(document)?;
    let notify_to = document
        .descendants()
        .find(|node| node.tag_name().name() == "NotifyTo")?
        .descendants()
        .find(|node| node.has_tag_name((WSA, "Address")))?
        .text()?
        .trim();
    Some((message_id, notify_to))
}

pub fn roxmltree_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

/// `herald-bench echo-server`: serves the echo on an ephemeral loopback port, in its own
/// process with tokio's default runtime (as herald runs), until its stdin closes; with a store
/// in `options`, each request's row is written to it before the answer ([`crate::floor`]).
pub fn run_echo_server(options: &EchoOptions) -> anyhow::Result<()> {
    // The parent holds our stdin: when it exits, however it exits, so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = match Durable::start(options).await? {
            None => Router::new().route("/eventing/default", post(echo)),
            Some(durable) => Router::new()
                .route("/eventing/default", post(crate::floor::echo_durably))
                .with_state(durable),
        };
        println!("echo listening on http://{address}");
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Options of `herald-bench echo-server`: with neither, the plain echo.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EchoOptions {
    /// A PostgreSQL database to write each request's row to, in a table of three columns,
    /// before answering.
    #[arg(long, value_name = "URL")]
    pub floor: Option<String>,
    /// herald's own store, a PostgreSQL URL or a SQLite data directory, to store each request
    /// as a subscription in before answering.
    #[arg(long, value_name = "URL|DIR")]
    pub herald_store: Option<String>,
}

/// The echo server as a child process of herald-bench.
pub struct EchoServer {
    child: Child,
    pub base: String,
}

impl EchoServer {
    pub async fn start(dir: &Path) -> anyhow::Result<EchoServer> {
        EchoServer::start_with(dir, &EchoOptions::default()).await
    }

    /// The echo, with each request's row written durably to the store `options` name before
    /// its answer ([`crate::floor`]).
    pub async fn start_with(dir: &Path, options: &EchoOptions) -> anyhow::Result<EchoServer> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("echo-server").stdin(Stdio::piped());
        if let Some(url) = &options.floor {
            command.arg("--floor").arg(url);
        }
        if let Some(store) = &options.herald_store {
            command.arg("--herald-store").arg(store);
        }
        let (child, base, _) =
            spawn_until_ready(command, "echo listening on ", &dir.join("echo.log"))?
                .wait(Duration::from_secs(30))
                .await?;
        Ok(EchoServer { child, base })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscribes_message_id_and_notify_to_are_found() {
        let message = crate::load::subscribe_message("http://127.0.0.1:9/sink/7", None);
        let document = roxmltree::Document::parse(&message).unwrap();
        let (message_id, notify_to) = subscribe_fields(&document).unwrap();
        assert!(message_id.starts_with("urn:uuid:"), "{message_id}");
        assert_eq!(notify_to, "http://127.0.0.1:9/sink/7");
    }

    #[test]
    fn no_fields_without_an_envelope_or_a_notify_to() {
        let other = roxmltree::Document::parse("<Other/>").unwrap();
        assert!(message_id(&other).is_none());
        let bare = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}"><s:Header><wsa:MessageID>m</wsa:MessageID></s:Header><s:Body/></s:Envelope>"#
        );
        let bare = roxmltree::Document::parse(&bare).unwrap();
        assert_eq!(message_id(&bare), Some("m"));
        assert!(subscribe_fields(&bare).is_none());
    }
}
