//! herald's command-line client: the verbs beside `herald serve`.
//!
//! - [`manage`]: `subscribe`, `renew`, `status`, `unsubscribe` — WS-Eventing over SOAP in any
//!   version, or a JSON webhook subscription.
//! - [`publish`]: `publish` an event to a source through the JSON API.
//! - [`sink`]: `sink`, a local HTTP receiver that prints what herald delivers.
//! - [`wire`]: the client's SOAP requests and how it reads the answers.
//! - [`client`]: the connection to herald (URL, bearer token), errors and their exit codes.
//!
//! A subscription is referred to later by its identifier (`uuid:…`), the **reference** that
//! `herald subscribe` prints: `renew`, `status` and `unsubscribe` look it up in the JSON API
//! (`GET /api/v1/subscriptions/{id}`), which knows its source and dialect, then send the SOAP
//! Renew, GetStatus or Unsubscribe of that version to its subscription manager — or, for a
//! webhook subscription, the JSON API's PATCH, GET or DELETE.
//!
//! Every verb produces a [`Report`]: text for people, or one JSON object with `--json`.

pub mod client;
pub mod manage;
pub mod publish;
pub mod sink;
pub mod wire;

use std::process::ExitCode;

pub use client::{CliError, Connection};

/// What a verb has to say: text for people and the same as one JSON object for scripts.
#[derive(Debug)]
pub struct Report {
    /// Lines for people.
    pub text: String,
    /// The `--json` form.
    pub json: serde_json::Value,
}

/// Prints a verb's outcome (the report on stdout; an error on stderr, and with `--json` also as
/// `{"error": …}` on stdout) and turns it into the process's exit code.
pub fn finish(json: bool, outcome: Result<Report, CliError>) -> ExitCode {
    match outcome {
        Ok(report) => {
            if json {
                println!("{}", report.json);
            } else {
                println!("{}", report.text.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("herald: {err}");
            if json {
                println!("{}", serde_json::json!({ "error": err.to_json() }));
            }
            ExitCode::from(err.exit_code())
        }
    }
}
