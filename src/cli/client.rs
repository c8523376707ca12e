//! The client's connection to herald: its URL and bearer token, the JSON API and SOAP requests,
//! and what can go wrong, each with its exit code.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::delivery::client::Outgoing;
use crate::soap::fault::ReceivedFault;

/// Where herald is and how to authenticate; `--json` for scripts.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// herald's base URL.
    #[arg(
        long,
        env = "HERALD_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Bearer token for publishing and the JSON API (the server's `api_token`); also read from
    /// HERALD_API_TOKEN, the variable `herald serve` takes it from.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print one JSON object instead of text (errors too, as {"error": …}).
    #[arg(long)]
    pub json: bool,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or its input cannot be used (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// herald could not be reached or did not answer (exit code 3).
    #[error("cannot reach herald at {url}: {why}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The client's error and its causes.
        why: String,
    },
    /// herald answered with a SOAP fault (exit code 1).
    #[error("SOAP fault {0}")]
    Fault(ReceivedFault),
    /// herald answered with an RFC 9457 problem (exit code 1).
    #[error("{title} (HTTP {status}): {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// The problem's title.
        title: String,
        /// The problem's detail.
        detail: String,
    },
    /// herald answered something this client does not understand (exit code 1).
    #[error("unexpected answer (HTTP {status}): {detail}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong with it, with the start of the body.
        detail: String,
    },
}

impl CliError {
    /// The process exit code: 1 herald refused, 2 bad usage or input, 3 herald unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            _ => 1,
        }
    }

    /// The error as JSON, for `--json`.
    pub fn to_json(&self) -> Value {
        match self {
            CliError::Usage(message) => json!({"kind": "usage", "message": message}),
            CliError::Unreachable { url, .. } => {
                json!({"kind": "unreachable", "url": url, "message": self.to_string()})
            }
            CliError::Fault(fault) => json!({
                "kind": "soap-fault", "code": fault.code, "subcode": fault.subcode,
                "reason": fault.reason,
            }),
            CliError::Problem {
                status,
                title,
                detail,
            } => json!({"kind": "problem", "status": status, "title": title, "detail": detail}),
            CliError::Unexpected { status, detail } => {
                json!({"kind": "unexpected", "status": status, "message": detail})
            }
        }
    }

    pub(crate) fn unexpected(status: u16, what: &str, body: &[u8]) -> CliError {
        let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
        CliError::Unexpected {
            status,
            detail: format!("{what}: {text}"),
        }
    }
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A client of one herald.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `connection`; the token falls back to `HERALD_API_TOKEN`.
    pub fn new(connection: &Connection) -> Result<Client, CliError> {
        let base = connection.url.trim().trim_end_matches('/').to_owned();
        match url::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(CliError::Usage(format!(
                    "--url must be an absolute http(s) URL, not '{base}'"
                )));
            }
        }
        let token = connection
            .token
            .clone()
            .or_else(|| std::env::var("HERALD_API_TOKEN").ok())
            .filter(|token| !token.is_empty());
        Ok(Client {
            base,
            token,
            http: http_client()?,
        })
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request built on `request`, with the bearer token when there is one.
    async fn send(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Answer, CliError> {
        let request = match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        };
        exchange(url, request).await
    }

    /// A JSON API call: `Ok(None)` for an empty 2xx answer, the document for any other 2xx,
    /// [`CliError::Problem`] for a problem document.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let url = self.url(path);
        let mut request = self
            .http
            .request(method, &url)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        json_answer(self.send(&url, request).await?)
    }

    /// Publishes `body` to `path` with these headers.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Option<Value>, CliError> {
        let url = self.url(path);
        let mut request = self.http.post(&url).header(ACCEPT, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        json_answer(self.send(&url, request.body(body)).await?)
    }

    /// POSTs a SOAP message (no bearer token: WS-Eventing management is open) and returns the
    /// answer as it came.
    pub async fn soap(&self, message: &Outgoing) -> Result<Answer, CliError> {
        let mut request = self
            .http
            .post(&message.url)
            .header(CONTENT_TYPE, &message.content_type);
        if let Some(action) = &message.soap_action {
            request = request.header("SOAPAction", format!("\"{action}\""));
        }
        exchange(&message.url, request.body(message.body.clone())).await
    }
}

/// Sends a request and reads the whole answer.
async fn exchange(url: &str, request: reqwest::RequestBuilder) -> Result<Answer, CliError> {
    let unreachable = |err: reqwest::Error| CliError::Unreachable {
        url: url.to_owned(),
        why: causes(&err),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.bytes().await.map_err(unreachable)?.to_vec();
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// An error and its causes, innermost last: reqwest's own message alone does not say why.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// The reqwest client of the command line: rustls with ring, 30 s per request.
pub fn http_client() -> Result<reqwest::Client, CliError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| CliError::Usage(format!("cannot build an HTTP client: {err}")))
}

fn json_answer(answer: Answer) -> Result<Option<Value>, CliError> {
    let parsed = || serde_json::from_slice::<Value>(&answer.body).ok();
    if (200..300).contains(&answer.status) {
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        return parsed().map(Some).ok_or_else(|| {
            CliError::unexpected(answer.status, "the answer is not JSON", &answer.body)
        });
    }
    match parsed() {
        Some(problem) if problem.get("title").is_some() => Err(CliError::Problem {
            status: answer.status,
            title: text(&problem, "title"),
            detail: text(&problem, "detail"),
        }),
        _ => Err(CliError::unexpected(
            answer.status,
            "herald refused the request",
            &answer.body,
        )),
    }
}

/// A string member of a JSON object, or empty.
pub fn text(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}
