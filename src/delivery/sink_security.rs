//! What herald keeps to authenticate to subscribers' sinks: the configured certificates and
//! credentials key, the client that presents herald's certificate, and each subscription's
//! HTTP Digest session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::credentials::{CredentialsKey, KeyError};
use super::digest::Challenge;
use crate::domain::secret::Secret;
use crate::domain::subscription::SubscriptionId;

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
    pub(super) key: Option<CredentialsKey>,
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
    pub(super) fn next(&self, owner: SubscriptionId) -> Option<(Challenge, String, u32)> {
        let mut sessions = self.sessions();
        let session = sessions.get_mut(&owner)?;
        session.count = session.count.checked_add(1)?;
        Some((
            session.challenge.clone(),
            session.cnonce.clone(),
            session.count,
        ))
    }

    pub(super) fn remember(&self, owner: SubscriptionId, challenge: Challenge, cnonce: String) {
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

    pub(super) fn forget(&self, owner: SubscriptionId) {
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
