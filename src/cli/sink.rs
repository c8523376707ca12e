//! `herald sink`: a local HTTP receiver that prints what herald delivers — for a SOAP message its
//! action and the content of its Body, for a webhook the headers that matter (Standard Webhooks,
//! CloudEvents) and the body — and answers 200; with `--fail N`, 503 to the first N requests,
//! so one terminal shows delivery, failure and herald's retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use serde_json::{Map, Value, json};

use super::CliError;
use crate::soap::envelope::{Envelope, Limits, parse_document};
use crate::soap::xml;

/// Options of `herald sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address and port to listen on (port 0: any free port; the line printed first names it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Answer 503 to the first N requests, then 200.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail: u64,
    /// Print one JSON object per request (a line each) instead of text.
    #[arg(long)]
    pub json: bool,
}

struct Sink {
    fail: u64,
    json: bool,
    received: AtomicU64,
}

/// Headers a webhook receiver cares about: Standard Webhooks' and CloudEvents' (`ce-*`).
fn interesting(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "webhook-id" | "webhook-timestamp" | "webhook-signature"
    ) || name.starts_with("ce-")
        || name.starts_with("herald-")
}

/// The SOAP action: `SOAPAction` (SOAP 1.1) or the media type's `action` parameter (SOAP 1.2).
fn soap_action(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(action) = header("soapaction").map(|a| a.trim().trim_matches('"'))
        && !action.is_empty()
    {
        return Some(action.to_owned());
    }
    header("content-type")?
        .split(';')
        .find_map(|parameter| parameter.trim().strip_prefix("action="))
        .map(|action| action.trim_matches('"').to_owned())
}

/// A SOAP message's version, `wsa:Action` (or the HTTP action) and Body content.
fn soap_parts(body: &[u8], headers: &HeaderMap) -> Option<(&'static str, String, String)> {
    let document = parse_document(body, Limits::default()).ok()?;
    let envelope = Envelope::from_document(&document).ok()?;
    let action = envelope
        .header_blocks()
        .find(|block| block.tag_name().name() == "Action")
        .map(xml::trimmed_text)
        .or_else(|| soap_action(headers))
        .unwrap_or_default();
    // As written: the namespaces in scope from the envelope would only add noise.
    let content: String = xml::elements(envelope.body)
        .map(|element| &document.input_text()[element.range()])
        .collect();
    Some((envelope.version.as_str(), action, content))
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = sink.received.fetch_add(1, Ordering::SeqCst) + 1;
    let failing = n <= sink.fail;
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let soap = soap_parts(&body, &headers);
    let shown: Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| interesting(name.as_str()))
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), Value::String(value))
        })
        .collect();
    let text = String::from_utf8_lossy(&body);
    if sink.json {
        let mut line = json!({
            "n": n, "method": method.as_str(), "path": uri.to_string(),
            "status": status.as_u16(), "headers": shown, "body": text,
        });
        match &soap {
            Some((version, action, content)) => {
                line["kind"] = json!("soap");
                line["soap"] = json!(version);
                line["action"] = json!(action);
                line["event"] = json!(content);
            }
            None => line["kind"] = json!("http"),
        }
        println!("{line}");
        return status;
    }
    let mut out = format!("#{n} {method} {uri} -> {}", status.as_u16());
    if failing {
        out.push_str(&format!(" (--fail: {n} of {})", sink.fail));
    }
    out.push('\n');
    match &soap {
        Some((version, action, content)) => {
            out.push_str(&format!(
                "  SOAP {version}  action: {action}\n  {content}\n"
            ));
        }
        None => {
            for (name, value) in &shown {
                out.push_str(&format!("  {name}: {}\n", value.as_str().unwrap_or("")));
            }
            out.push_str(&format!("  {text}\n"));
        }
    }
    println!("{out}");
    status
}

/// `herald sink`: serves until Ctrl-C or SIGTERM.
pub async fn run(args: &SinkArgs) -> Result<(), CliError> {
    let sink = Arc::new(Sink {
        fail: args.fail,
        json: args.json,
        received: AtomicU64::new(0),
    });
    let app = Router::new().fallback(any(receive)).with_state(sink);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|err| CliError::Usage(format!("cannot listen on {}: {err}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|err| CliError::Usage(format!("cannot listen on {}: {err}", args.listen)))?;
    // The first line, which scripts (and the tests) wait for.
    if args.json {
        println!("{}", json!({ "listening": format!("http://{address}") }));
    } else {
        println!("sink listening on http://{address}");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::app::shutdown_signal())
        .await
        .map_err(|err| CliError::Usage(format!("the sink stopped: {err}")))
}
