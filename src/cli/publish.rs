//! `herald publish`: one event to a source through the JSON API, the body from a file or stdin.

use std::io::Read;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::client::{Client, text};
use super::{CliError, Connection, Report};

/// Options of `herald publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The event source to publish to.
    pub source: String,
    /// The file holding the event's body; `-` or left out: standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The event's action URI (sent as `Herald-Action`).
    #[arg(long, short = 'a', value_name = "URI")]
    pub action: Option<String>,
    /// The body's media type.
    #[arg(long, value_name = "TYPE", default_value = "application/xml")]
    pub content_type: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// `herald publish`.
pub async fn publish(args: &PublishArgs) -> Result<Report, CliError> {
    let client = Client::new(&args.connection)?;
    let body = match &args.file {
        Some(path) if path.as_os_str() != "-" => std::fs::read(path)
            .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", path.display())))?,
        _ => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|err| CliError::Usage(format!("cannot read standard input: {err}")))?;
            body
        }
    };
    let mut headers = vec![("content-type", args.content_type.clone())];
    if let Some(action) = &args.action {
        headers.push(("herald-action", action.clone()));
    }
    let path = format!("/api/v1/sources/{}/events", args.source);
    let answer = client
        .post_raw(&path, &headers, body)
        .await?
        .unwrap_or_else(|| json!({"events": []}));
    let events = answer
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = String::new();
    for event in &events {
        let seq = event.get("seq").and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "published {} to {} (seq {seq})\n",
            text(event, "id"),
            args.source
        ));
    }
    if events.is_empty() {
        out.push_str("published\n");
    }
    let mut json = answer;
    json["source"] = Value::String(args.source.clone());
    Ok(Report { text: out, json })
}
