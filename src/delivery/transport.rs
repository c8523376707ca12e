//! The delivery client's parts below it: the messages it sends and what came of them, its
//! timeouts, and the HTTP client builder with herald's settings and the endpoint policy's
//! resolver. Shared by the client and by sink authentication.

use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::EndpointPolicy;

/// Timeouts of the delivery client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// Connecting, including TLS.
    pub connect_timeout: Duration,
    /// The whole request, from connecting to the last response byte.
    pub request_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> ClientSettings {
        ClientSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// A message ready to POST.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to.
    pub url: String,
    /// `Content-Type` (SOAP 1.2 carries the action here).
    pub content_type: String,
    /// `SOAPAction` for SOAP 1.1.
    pub soap_action: Option<String>,
    /// The envelope (or a webhook's body).
    pub body: String,
    /// Further headers (a webhook's signature, CloudEvents attributes).
    pub headers: Vec<(&'static str, String)>,
    /// The reply the receiver must answer with for the message to count as delivered
    /// (WS-Management's `wsman:Ack`); `None`: any 2xx without a fault.
    pub expect_reply: Option<ExpectedReply>,
}

/// A reply a message must get: a SOAP envelope with this `wsa:Action` and `wsa:RelatesTo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedReply {
    /// The reply's action.
    pub action: &'static str,
    /// The message it must relate to: the sent message's `wsa:MessageID`.
    pub relates_to: String,
}

impl Outgoing {
    /// Its extra headers with `SOAPAction`, as sent.
    pub(super) fn all_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = self.headers.clone();
        if let Some(action) = &self.soap_action {
            headers.push(("SOAPAction", format!("\"{action}\"")));
        }
        headers
    }
}

/// What came of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx without a SOAP fault.
    Delivered,
    /// Anything else.
    Failed {
        /// What happened, for operators.
        error: String,
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// 410 Gone: the receiver will never take it; give up at once.
        gone: bool,
    },
}

impl Attempt {
    pub(super) fn failed(error: impl Into<String>) -> Attempt {
        Attempt::Failed {
            error: error.into(),
            retry_after: None,
            gone: false,
        }
    }
}

/// What one request came to: the attempt, and on a 401 the sink's challenges.
pub(super) struct Exchange {
    pub(super) attempt: Attempt,
    /// The HTTP status, when there was an answer.
    pub(super) status: Option<u16>,
    /// `WWW-Authenticate` values of a 401.
    pub(super) challenges: Vec<String>,
}

impl From<Attempt> for Exchange {
    fn from(attempt: Attempt) -> Exchange {
        Exchange {
            attempt,
            status: None,
            challenges: Vec::new(),
        }
    }
}

pub(super) struct PolicyResolver(pub(super) Arc<EndpointPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addresses = policy
                .resolve(name.as_str())
                .await
                .map_err(|err| Box::new(err) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// A client builder with herald's delivery settings.
pub(super) fn builder(
    policy: &Arc<EndpointPolicy>,
    settings: ClientSettings,
    roots: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        // No per-host cap on idle connections: no more than `delivery.max_concurrency`
        // requests are ever in flight, so no host can hold more connections than that. A
        // smaller cap made a fan-out to subscribers on one host close and reopen
        // connections (at 256 in flight, one delivery in 15 opened a new one).
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .no_proxy()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(PolicyResolver(policy.clone()))
        .tls_certs_merge(roots.iter().cloned())
}
