//! Secrets: a subscriber's password for its sink, herald's credentials key. In the clear they
//! live in memory only, behind a type that never prints them and cannot be serialized; what is
//! stored is the sealed form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret in the clear, in memory only: its `Debug` shows no character of it and it has no
/// `Serialize`, so it cannot reach a log line, a JSON answer or the store by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that must use it (sealing, an `Authorization`
    /// header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// A secret sealed with herald's credentials key (see `delivery::credentials`): what the store
/// keeps. Only a node holding the key can open it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    /// The sealed form as text (`v1:{key id}:{base64}`).
    pub fn new(text: String) -> SealedSecret {
        SealedSecret(text)
    }

    /// The sealed text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
        assert_eq!(secret.expose(), "hunter2");
        let sealed = SealedSecret::new("v1:abc:xyz".into());
        assert_eq!(format!("{sealed:?}"), "SealedSecret(..)");
        assert_eq!(serde_json::to_string(&sealed).unwrap(), "\"v1:abc:xyz\"");
    }
}
