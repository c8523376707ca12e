//! The delivery HTTP client, built once and shared: pooled keep-alive connections per host,
//! connect and request timeouts, no redirects, rustls, and the endpoint policy applied after DNS
//! resolution (and to IP literals before connecting).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

use super::policy::{EndpointPolicy, PolicyError, parse_endpoint};
use super::sink_security::{SinkClients, SinkSecurity};
use super::transport::Exchange;
pub use super::transport::{Attempt, ClientSettings, ExpectedReply, Outgoing};
use crate::soap::envelope::{fault_codes, is_fault, is_reply};

/// Fault subcodes by which a receiver says it will never take what is sent, so delivery gives
/// up at once as for 410 Gone: WS-Management's `wsman:DeliveryRefused` (DSP0226).
const REFUSALS: [&str; 1] = ["DeliveryRefused"];

/// Whether a response body is a SOAP fault that refuses delivery for good.
fn refuses(body: &[u8]) -> bool {
    fault_codes(body)
        .is_some_and(|codes| codes.iter().any(|code| REFUSALS.contains(&code.as_str())))
}

/// How much of a response body is read (to detect a SOAP fault); the rest is discarded.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where a request goes: an address, parsed for the request, or an address its caller keeps
/// parsed ([`parse_endpoint`]'s result) so that a reader's every message does not parse it again
/// (6.0k of a delivery's 92k instructions in `callgrind`, fan-out to 100 subscribers).
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    Address(&'a str),
    Parsed(&'a url::Url),
}

/// The shared delivery client.
#[derive(Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    policy: Arc<EndpointPolicy>,
    settings: ClientSettings,
    /// Sink authentication: the client with herald's certificate, the credentials key, Digest
    /// sessions.
    pub(super) sinks: Arc<SinkClients>,
}

impl DeliveryClient {
    /// Builds the client, trusting the system's roots, without a client certificate or a
    /// credentials key.
    pub fn new(
        policy: Arc<EndpointPolicy>,
        settings: ClientSettings,
    ) -> Result<DeliveryClient, reqwest::Error> {
        DeliveryClient::with_sink_security(policy, settings, SinkSecurity::default())
    }

    /// Assembles the client (see `DeliveryClient::with_sink_security`).
    pub(super) fn from_parts(
        http: reqwest::Client,
        policy: Arc<EndpointPolicy>,
        settings: ClientSettings,
        sinks: SinkClients,
    ) -> DeliveryClient {
        DeliveryClient {
            http,
            policy,
            settings,
            sinks: Arc::new(sinks),
        }
    }
}

impl DeliveryClient {
    /// The endpoint policy.
    pub fn policy(&self) -> &EndpointPolicy {
        &self.policy
    }

    /// Its timeouts.
    pub fn settings(&self) -> ClientSettings {
        self.settings
    }

    /// POSTs one message and classifies the outcome.
    pub async fn send(&self, message: &Outgoing) -> Attempt {
        self.send_towards(message, Target::Address(&message.url))
            .await
    }

    /// [`DeliveryClient::send`] to `target`: the message's address, or that address as its
    /// caller keeps it parsed.
    pub(super) async fn send_towards(&self, message: &Outgoing, target: Target<'_>) -> Attempt {
        self.exchange(
            false,
            target,
            &message.content_type,
            message.body.clone().into_bytes(),
            &message.all_headers(),
            message.expect_reply.as_ref(),
        )
        .await
        .attempt
    }

    /// POSTs `body` as it is, with `content_type` and extra headers, and classifies the outcome
    /// as [`DeliveryClient::send`] does.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Attempt {
        self.exchange(
            false,
            Target::Address(url),
            content_type,
            body,
            headers,
            None,
        )
        .await
        .attempt
    }

    /// [`DeliveryClient::post`], through the client with herald's certificate when `mutual`,
    /// keeping what sink authentication needs of the answer; with `expected`, a 2xx counts
    /// only when it carries that reply.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        &self,
        mutual: bool,
        target: Target<'_>,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
        expected: Option<&ExpectedReply>,
    ) -> Exchange {
        let http = match (mutual, &self.sinks.mutual) {
            (false, _) => &self.http,
            (true, Some(mutual)) => mutual,
            (true, None) => {
                return Attempt::failed(
                    "the sink asked for herald's client certificate, and none is configured \
                     (delivery.client_certificate)",
                )
                .into();
            }
        };
        // Parsed once: the client dials the host judged here. The resolver only sees names;
        // an address literal is judged before connecting.
        let url = match target {
            Target::Parsed(url) => url.clone(),
            Target::Address(address) => match parse_endpoint(address) {
                Ok(url) => url,
                Err(err) => return Attempt::failed(err.to_string()).into(),
            },
        };
        if let Err(err) = self.policy.check_literal(&url) {
            return Attempt::failed(err.to_string()).into();
        }
        let Ok(content_type) = HeaderValue::from_str(content_type) else {
            return Attempt::failed("invalid content type").into();
        };
        let mut request = http.post(url).header(CONTENT_TYPE, content_type).body(body);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Attempt::failed(self.describe(&err)).into(),
        };
        let status = response.status();
        let challenges = if status == reqwest::StatusCode::UNAUTHORIZED {
            (response.headers().get_all(WWW_AUTHENTICATE).iter())
                .filter_map(|value| value.to_str().ok())
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        let answered = |attempt: Attempt| Exchange {
            attempt,
            status: Some(status.as_u16()),
            challenges: challenges.clone(),
        };
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() < MAX_RESPONSE_BYTES {
                        body.extend_from_slice(
                            &chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())],
                        );
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    return answered(Attempt::failed(format!(
                        "HTTP {}, then reading the response failed: {}",
                        status.as_u16(),
                        self.describe(&err)
                    )));
                }
            }
        }
        if status.is_success() {
            if is_fault(&body) {
                return answered(Attempt::Failed {
                    error: format!("HTTP {} with a SOAP fault", status.as_u16()),
                    retry_after,
                    gone: refuses(&body),
                });
            }
            if let Some(expected) = expected
                && !is_reply(&body, expected.action, &expected.relates_to)
            {
                return answered(Attempt::failed(format!(
                    "HTTP {} without the reply {} relating to {}",
                    status.as_u16(),
                    expected.action,
                    expected.relates_to
                )));
            }
            return answered(Attempt::Delivered);
        }
        answered(Attempt::Failed {
            error: match status.canonical_reason() {
                Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
                None => format!("HTTP {}", status.as_u16()),
            },
            retry_after,
            gone: status == reqwest::StatusCode::GONE || refuses(&body),
        })
    }
}

/// What came of a call whose answer matters (an invocation's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// The service answered.
    Answered {
        /// The HTTP status.
        status: u16,
        /// `Content-Type`, if any.
        content_type: Option<String>,
        /// `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The body.
        body: Vec<u8>,
    },
    /// No answer: a transport error or a timeout (`refused`: the endpoint policy refused the
    /// address, which calling again will not change; or the body was larger than allowed).
    Failed {
        /// What happened.
        error: String,
        /// Whether calling again is pointless.
        refused: bool,
    },
}

impl DeliveryClient {
    /// POSTs `message` within `timeout` and returns the answer, its body read up to
    /// `max_body` bytes (a longer one is a failure: nothing is cut silently).
    pub async fn call(&self, message: &Outgoing, timeout: Duration, max_body: usize) -> Call {
        let failed = |error: String, refused: bool| Call::Failed { error, refused };
        let url = match parse_endpoint(&message.url) {
            Ok(url) => url,
            Err(err) => return failed(err.to_string(), true),
        };
        if let Err(err) = self.policy.check_literal(&url) {
            return failed(err.to_string(), true);
        }
        let Ok(content_type) = HeaderValue::from_str(&message.content_type) else {
            return failed("invalid content type".into(), true);
        };
        let mut request = self
            .http
            .post(url)
            .timeout(timeout)
            .header(CONTENT_TYPE, content_type)
            .body(message.body.clone());
        if let Some(action) = &message.soap_action {
            request = request.header("SOAPAction", format!("\"{action}\""));
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                // A forbidden address stays forbidden; a name that does not resolve now may
                // resolve later (a DNS failure is a transport error).
                let refused = matches!(
                    cause::<PolicyError>(&err),
                    Some(PolicyError::Forbidden { .. } | PolicyError::BadUrl)
                );
                return failed(self.describe(&err), refused);
            }
        };
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER).as_deref().and_then(parse_retry_after);
        let content_type = header(CONTENT_TYPE);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > max_body => {
                    return failed(
                        format!("HTTP {status}, with a body larger than {max_body} bytes"),
                        true,
                    );
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(err) => {
                    return failed(
                        format!(
                            "HTTP {status}, then reading the response failed: {}",
                            self.describe(&err)
                        ),
                        false,
                    );
                }
            }
        }
        Call::Answered {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    /// What went wrong with a request, in an operator's words: the endpoint policy's refusal
    /// (a name that does not resolve, a forbidden address), a refused or reset connection, a
    /// timeout, and otherwise the innermost cause.
    fn describe(&self, err: &reqwest::Error) -> String {
        if let Some(refusal) = cause::<PolicyError>(err) {
            return refusal.to_string();
        }
        if err.is_timeout() {
            return if err.is_connect() {
                format!(
                    "timed out connecting (after {:?})",
                    self.settings.connect_timeout
                )
            } else {
                format!(
                    "timed out waiting for the response (after {:?})",
                    self.settings.request_timeout
                )
            };
        }
        if let Some(io) = cause::<std::io::Error>(err) {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "connection reset by the receiver".to_owned()
                }
                _ if err.is_connect() => format!("connection failed: {io}"),
                _ => format!("request failed: {io}"),
            };
        }
        let mut innermost = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            innermost = cause.to_string();
            source = cause.source();
        }
        if err.is_connect() {
            format!("connection failed: {innermost}")
        } else {
            format!("request failed: {innermost}")
        }
    }
}

/// The first error of type `E` in the chain of `err`'s causes.
fn cause<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn client(allow_loopback: bool) -> DeliveryClient {
        let allowed = if allow_loopback {
            vec!["127.0.0.0/8".parse().unwrap()]
        } else {
            Vec::new()
        };
        let settings = ClientSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_millis(300),
        };
        DeliveryClient::new(Arc::new(EndpointPolicy::new(allowed)), settings).unwrap()
    }

    async fn error_of(client: &DeliveryClient, url: &str) -> String {
        let message = Outgoing {
            url: url.to_owned(),
            content_type: "application/soap+xml".into(),
            soap_action: None,
            body: "<x/>".into(),
            headers: Vec::new(),
            expect_reply: None,
        };
        match client.send(&message).await {
            Attempt::Failed { error, .. } => error,
            Attempt::Delivered => panic!("{url} was delivered"),
        }
    }

    /// A loopback server that reads a request, then answers `reply` (or holds the connection
    /// open when there is none).
    async fn server(reply: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    match reply {
                        Some(reply) => {
                            let _ = socket.write_all(reply.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(5)).await,
                    }
                });
            }
        });
        format!("http://{address}/notify")
    }

    #[tokio::test]
    async fn failures_say_what_happened() {
        let client = client(true);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(error_of(&client, &refused).await, "connection refused");

        let unresolvable = error_of(&client, "http://herald-test.invalid/notify").await;
        assert!(
            unresolvable.starts_with("the name herald-test.invalid does not resolve: "),
            "{unresolvable}"
        );

        let silent = server(None).await;
        assert_eq!(
            error_of(&client, &silent).await,
            "timed out waiting for the response (after 300ms)"
        );

        let unavailable = server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        assert_eq!(
            error_of(&client, &unavailable).await,
            "HTTP 503 Service Unavailable"
        );

        let hung_up = server(Some("")).await;
        let error = error_of(&client, &hung_up).await;
        assert!(error.starts_with("request failed: "), "{error}");

        let forbidden = error_of(&self::client(false), &unavailable).await;
        assert!(forbidden.contains("not allow-listed"), "{forbidden}");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn soap_faults_in_2xx_bodies() {
        let fault = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault/></s:Body></s:Envelope>"#;
        assert!(is_fault(fault.as_bytes()));
        assert!(!is_fault(b""));
        assert!(!is_fault(b"ok"));
        assert!(!is_fault(br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>"#));
        let soap11 = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><Fault><faultcode>Client</faultcode><faultstring>no</faultstring></Fault></Body></Envelope>"#;
        assert!(is_fault(soap11.as_bytes()));
        let refusal = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:w="urn:w"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:DeliveryRefused</s:Value></s:Subcode></s:Code></s:Fault></s:Body></s:Envelope>"#;
        assert!(is_fault(refusal.as_bytes()) && refuses(refusal.as_bytes()));
        assert!(!refuses(fault.as_bytes()) && !refuses(b""));
    }
}
