//! Authenticating to a subscriber's sink, as a WS-Management subscriber asks with `wsman:Auth`
//! (DMTF DSP0226): HTTP Basic on every request, HTTP Digest answering the sink's challenge
//! (its nonce used again with the next count, so most messages cost one request), and for the
//! mutual profiles herald's client certificate, presented by a second HTTP client that only
//! these subscriptions use. Authentication applies to every message to NotifyTo's origin
//! (scheme, host, port): notifications, heartbeats, and SubscriptionEnd when EndTo is there too;
//! credentials are never sent to another origin.
//!
//! Also what the delivery clients are built with: extra CA certificates trusted for sinks,
//! herald's client identity, and the credentials key (see [`super::credentials`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use super::client::{Attempt, ClientSettings, DeliveryClient, Outgoing, builder};
use super::credentials::{CredentialsKey, KeyError, OpenError};
use super::digest::{self, Challenge};
use super::policy::EndpointPolicy;
use crate::domain::secret::Secret;
use crate::domain::subscription::{Subscription, SubscriptionId};
use crate::domain::wsman::HttpScheme;

/// Digest sessions kept at most (one per subscription); beyond, all are forgotten and sinks
/// challenge again.
const MAX_SESSIONS: usize = 4096;

/// What sink authentication is configured with (`[delivery]` keys, `HERALD_CREDENTIALS_KEY`).
#[derive(Debug, Clone, Default)]
pub struct SinkSecuritySettings {
    /// PEM file of CA certificates trusted for sinks besides the system's.
    pub ca_certificates: Option<PathBuf>,
    /// herald's client certificate (PEM, the chain leaf first), for the mutual profiles.
    pub client_certificate: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, RSA or SEC1).
    pub client_key: Option<PathBuf>,
    /// A file holding the credentials key (base64 of 32 bytes).
    pub credentials_key_file: Option<PathBuf>,
    /// The credentials key itself (base64 of 32 bytes), from the environment.
    pub credentials_key: Option<Secret>,
}

/// Why sink authentication's files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The credentials key could not be had.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Sink authentication's material, loaded.
#[derive(Default)]
pub struct SinkSecurity {
    /// Extra trusted roots.
    pub roots: Vec<reqwest::Certificate>,
    /// herald's client identity.
    pub identity: Option<reqwest::Identity>,
    /// The credentials key.
    pub key: Option<CredentialsKey>,
}

fn read(path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        path: path.to_owned(),
        source,
    })
}

impl SinkSecurity {
    /// Loads what `settings` name. The key comes from `HERALD_CREDENTIALS_KEY`, else the key
    /// file, else — `embedded_dir` being the SQLite data directory — the key generated there.
    pub fn load(
        settings: &SinkSecuritySettings,
        embedded_dir: Option<&Path>,
    ) -> Result<SinkSecurity, SecurityError> {
        let roots = match &settings.ca_certificates {
            None => Vec::new(),
            Some(path) => {
                let pem_error = |why: String| SecurityError::Pem {
                    path: path.clone(),
                    why,
                };
                let roots = reqwest::Certificate::from_pem_bundle(&read(path)?)
                    .map_err(|err| pem_error(format!("not PEM certificates ({err})")))?;
                if roots.is_empty() {
                    return Err(pem_error("holds no certificate".into()));
                }
                roots
            }
        };
        let identity = match (&settings.client_certificate, &settings.client_key) {
            (Some(certificate), Some(key)) => {
                let mut pem = read(certificate)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(
                    reqwest::Identity::from_pem(&pem).map_err(|err| SecurityError::Pem {
                        path: certificate.clone(),
                        why: format!(
                            "with {}: not a certificate and its key ({err})",
                            key.display()
                        ),
                    })?,
                )
            }
            _ => None,
        };
        let key = if let Some(text) = &settings.credentials_key {
            Some(CredentialsKey::parse(
                text.expose(),
                "in HERALD_CREDENTIALS_KEY",
            )?)
        } else if let Some(path) = &settings.credentials_key_file {
            Some(CredentialsKey::read(path)?)
        } else if let Some(dir) = embedded_dir {
            let (key, made) = CredentialsKey::read_or_generate(dir)?;
            if made {
                tracing::info!(
                    file = %dir.join(super::credentials::GENERATED_KEY_FILE).display(),
                    key = key.id(),
                    "generated the credentials key that seals sink passwords; keep it with the database"
                );
            }
            Some(key)
        } else {
            None
        };
        Ok(SinkSecurity {
            roots,
            identity,
            key,
        })
    }
}

/// A Digest nonce in use with a sink.
struct Session {
    challenge: Challenge,
    cnonce: String,
    count: u32,
}

/// What the delivery client keeps for sink authentication.
pub(super) struct SinkClients {
    /// The client that presents herald's certificate.
    pub(super) mutual: Option<reqwest::Client>,
    /// The credentials key.
    key: Option<CredentialsKey>,
    /// Each subscription's Digest session.
    sessions: Mutex<HashMap<SubscriptionId, Session>>,
}

impl SinkClients {
    pub(super) fn new(mutual: Option<reqwest::Client>, key: Option<CredentialsKey>) -> SinkClients {
        SinkClients {
            mutual,
            key,
            sessions: Mutex::default(),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionId, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session's challenge, client nonce and next count, if there is one.
    fn next(&self, owner: SubscriptionId) -> Option<(Challenge, String, u32)> {
        let mut sessions = self.sessions();
        let session = sessions.get_mut(&owner)?;
        session.count = session.count.checked_add(1)?;
        Some((
            session.challenge.clone(),
            session.cnonce.clone(),
            session.count,
        ))
    }

    fn remember(&self, owner: SubscriptionId, challenge: Challenge, cnonce: String) {
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS {
            sessions.clear();
        }
        sessions.insert(
            owner,
            Session {
                challenge,
                cnonce,
                count: 1,
            },
        );
    }

    fn forget(&self, owner: SubscriptionId) {
        self.sessions().remove(&owner);
    }
}

/// Whether two URLs have the same origin (scheme, host, port).
pub fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// A URL's request target (path and query), which a digest covers.
fn request_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        },
        Err(_) => "/".to_owned(),
    }
}

fn client_nonce() -> String {
    let mut bytes = [0u8; 16];
    // Without system randomness a predictable nonce would be sent: a fixed one is no worse, and
    // herald cannot run without randomness anyway (subscription ids need it).
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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

impl DeliveryClient {
    /// Builds the client with what sink authentication needs: extra trusted roots (for every
    /// delivery), herald's client identity (a second client, for the mutual profiles only) and
    /// the credentials key.
    pub fn with_sink_security(
        policy: Arc<EndpointPolicy>,
        settings: ClientSettings,
        security: SinkSecurity,
    ) -> Result<DeliveryClient, reqwest::Error> {
        // Several components may build clients; only the first installation counts.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = builder(&policy, settings, &security.roots).build()?;
        let mutual = security
            .identity
            .map(|identity| {
                builder(&policy, settings, &security.roots)
                    .identity(identity)
                    .build()
            })
            .transpose()?;
        Ok(DeliveryClient::from_parts(
            http,
            policy,
            settings,
            SinkClients::new(mutual, security.key),
        ))
    }

    /// The key sink passwords are sealed with, if this node has one.
    pub fn credentials_key(&self) -> Option<&CredentialsKey> {
        self.sinks.key.as_ref()
    }

    /// Whether herald has a client certificate for the mutual profiles.
    pub fn has_client_certificate(&self) -> bool {
        self.sinks.mutual.is_some()
    }

    /// POSTs `message` to a place of `subscription`'s (its NotifyTo, or its EndTo), as
    /// [`DeliveryClient::send`] does, authenticated as the subscriber asked when the place is
    /// NotifyTo's origin.
    pub async fn send_to(&self, subscription: &Subscription, message: &Outgoing) -> Attempt {
        let auth = subscription
            .wsman
            .as_ref()
            .and_then(|wsman| wsman.auth.as_ref())
            .filter(|_| same_origin(&message.url, &subscription.notify_to.address));
        let Some(auth) = auth else {
            return self.send(message).await;
        };
        let mutual = auth.profile.mutual();
        let headers = message.all_headers();
        let Some(scheme) = auth.profile.http_scheme() else {
            return self
                .authenticated(mutual, message, &headers, None)
                .await
                .attempt;
        };
        let password = match (&auth.password, &self.sinks.key) {
            (Some(sealed), Some(key)) => match key.open(sealed, subscription.id) {
                Ok(password) => password,
                Err(err) => return Attempt::failed(err.to_string()),
            },
            (Some(_), None) => return Attempt::failed(OpenError::NoKey.to_string()),
            (None, _) => return Attempt::failed("the subscription keeps no password for its sink"),
        };
        let credentials = (auth.username.as_deref().unwrap_or(""), password.expose());
        match scheme {
            HttpScheme::Basic => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", credentials.0, credentials.1));
                let authorization = Some(format!("Basic {token}"));
                self.authenticated(mutual, message, &headers, authorization)
                    .await
                    .attempt
            }
            HttpScheme::Digest => {
                self.digest(subscription.id, mutual, message, &headers, credentials)
                    .await
            }
        }
    }

    async fn authenticated(
        &self,
        mutual: bool,
        message: &Outgoing,
        headers: &[(&'static str, String)],
        authorization: Option<String>,
    ) -> Exchange {
        let mut headers = headers.to_vec();
        headers.extend(authorization.map(|value| ("Authorization", value)));
        self.exchange(
            mutual,
            &message.url,
            &message.content_type,
            message.body.clone().into_bytes(),
            &headers,
            message.expect_reply.as_ref(),
        )
        .await
    }

    /// One attempt with HTTP Digest: the session's nonce with the next count when there is
    /// one, else (or when the sink challenges it) the sink's new challenge answered.
    async fn digest(
        &self,
        owner: SubscriptionId,
        mutual: bool,
        message: &Outgoing,
        headers: &[(&'static str, String)],
        credentials: (&str, &str),
    ) -> Attempt {
        let uri = request_target(&message.url);
        let request = digest::Request {
            method: "POST",
            uri: &uri,
            body: message.body.as_bytes(),
        };
        let first = self.sinks.next(owner).map(|(challenge, cnonce, count)| {
            digest::authorization(&challenge, credentials, request, count, &cnonce)
        });
        let answer = self.authenticated(mutual, message, headers, first).await;
        if answer.status != Some(401) {
            return answer.attempt;
        }
        let Some(challenge) = digest::first_answerable(&answer.challenges) else {
            self.sinks.forget(owner);
            return Attempt::failed(
                "HTTP 401 Unauthorized, without a Digest challenge herald can answer",
            );
        };
        let cnonce = client_nonce();
        let authorization = digest::authorization(&challenge, credentials, request, 1, &cnonce);
        self.sinks.remember(owner, challenge, cnonce);
        let answer = self
            .authenticated(mutual, message, headers, Some(authorization))
            .await;
        if answer.status == Some(401) {
            self.sinks.forget(owner);
            return Attempt::failed(
                "HTTP 401 Unauthorized: the sink refused the digest credentials",
            );
        }
        answer.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_request_targets() {
        assert!(same_origin("http://a.example/x", "http://A.example:80/y?z"));
        assert!(same_origin(
            "https://127.0.0.1:8443/a",
            "https://127.0.0.1:8443/b"
        ));
        assert!(!same_origin("https://a.example/x", "http://a.example/x"));
        assert!(!same_origin("http://a.example:81/", "http://a.example/"));
        assert!(!same_origin("http://a.example/", "http://b.example/"));
        assert!(!same_origin("not a url", "not a url"));
        assert_eq!(request_target("http://h/p/q?a=1&b"), "/p/q?a=1&b");
        assert_eq!(request_target("http://h"), "/");
    }

    #[test]
    fn digest_sessions_count_up_and_are_bounded() {
        let clients = SinkClients::new(None, None);
        let owner = SubscriptionId::new_random();
        assert!(clients.next(owner).is_none());
        let challenge =
            digest::first_answerable(&[r#"Digest realm="r", nonce="n", qop=auth"#.to_owned()])
                .unwrap();
        clients.remember(owner, challenge, "c".into());
        assert_eq!(clients.next(owner).map(|(_, _, n)| n), Some(2));
        assert_eq!(clients.next(owner).map(|(_, _, n)| n), Some(3));
        clients.forget(owner);
        assert!(clients.next(owner).is_none());
    }
}
