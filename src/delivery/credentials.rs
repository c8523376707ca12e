//! The credentials key: what herald seals its subscribers' sink passwords with before they are
//! stored (ChaCha20-Poly1305, from `ring`), and opens them with when it sends. The key is held
//! outside the database: given in `HERALD_CREDENTIALS_KEY`, read from
//! `delivery.credentials_key_file`, or — for the embedded SQLite store only, when neither is
//! set — generated once into `credentials.key` beside the database (mode 0600). PostgreSQL
//! nodes must all be given the same key; without one they refuse the profiles that need a
//! password.
//!
//! A sealed password reads `v1:{key id}:{base64(nonce ‖ ciphertext ‖ tag)}`, its associated
//! data the subscription's id, so a sealed value copied to another subscription does not open.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::secret::{SealedSecret, Secret};
use crate::domain::subscription::SubscriptionId;

/// The file name of a generated key, in the SQLite data directory.
pub const GENERATED_KEY_FILE: &str = "credentials.key";

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("credentials key file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not the base64 of 32 bytes.
    #[error(
        "the credentials key {0} is not the base64 of 32 bytes (make one with: head -c 32 /dev/urandom | base64)"
    )]
    Malformed(String),
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed under another key (this node's is another, or was replaced).
    #[error("the sink's password was sealed with another credentials key ({0}) than this node's")]
    OtherKey(String),
    /// Damaged, or moved from another subscription.
    #[error("the sink's sealed password does not open (damaged, or not this subscription's)")]
    Damaged,
    /// This node has no key at all.
    #[error("this node has no credentials key to open the sink's password with")]
    NoKey,
}

/// herald's credentials key.
pub struct CredentialsKey {
    key: LessSafeKey,
    id: String,
    random: SystemRandom,
}

impl std::fmt::Debug for CredentialsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialsKey({})", self.id)
    }
}

impl CredentialsKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> CredentialsKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..4]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        // 32 bytes is ChaCha20-Poly1305's key length: this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte ChaCha20-Poly1305 key"));
        CredentialsKey {
            key: LessSafeKey::new(unbound),
            id,
            random: SystemRandom::new(),
        }
    }

    /// The key a base64 text holds (`what` names where it came from, for the error).
    pub fn parse(text: &str, what: &str) -> Result<CredentialsKey, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| KeyError::Malformed(what.to_owned()))?;
        Ok(CredentialsKey::from_bytes(&bytes))
    }

    /// The key in a file (base64 of 32 bytes).
    pub fn read(path: &Path) -> Result<CredentialsKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?;
        CredentialsKey::parse(&text, &format!("in {}", path.display()))
    }

    /// The key in `dir`'s generated key file, made (mode 0600, never overwritten) when there is
    /// none yet; `true` when it was made now.
    pub fn read_or_generate(dir: &Path) -> Result<(CredentialsKey, bool), KeyError> {
        let path = dir.join(GENERATED_KEY_FILE);
        let file_error = |source| KeyError::File {
            path: path.clone(),
            source,
        };
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| file_error(std::io::Error::other("no system randomness")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                let text = format!("{}\n", STANDARD.encode(bytes));
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                Ok((CredentialsKey::from_bytes(&bytes), true))
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((CredentialsKey::read(&path)?, false))
            }
            Err(err) => Err(file_error(err)),
        }
    }

    /// A short, public name of the key (the start of its SHA-256), kept in each sealed value.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret` for subscription `owner`.
    pub fn seal(&self, secret: &Secret, owner: SubscriptionId) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's randomness failing is not something herald can go on without.
        self.random
            .fill(&mut nonce)
            .unwrap_or_else(|_| panic!("no system randomness for a nonce"));
        let mut sealed = secret.expose().as_bytes().to_vec();
        let aad = owner.key();
        // Sealing fails only for inputs of gigabytes.
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut sealed,
            )
            .unwrap_or_else(|_| panic!("sealing a password failed"));
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        SealedSecret::new(format!("v1:{}:{}", self.id, STANDARD.encode(blob)))
    }

    /// Opens what [`CredentialsKey::seal`] sealed for `owner`.
    pub fn open(&self, sealed: &SealedSecret, owner: SubscriptionId) -> Result<Secret, OpenError> {
        let mut parts = sealed.as_str().splitn(3, ':');
        let (Some("v1"), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(OpenError::Damaged);
        };
        if id != self.id {
            return Err(OpenError::OtherKey(id.chars().take(16).collect()));
        }
        let blob = STANDARD.decode(data).map_err(|_| OpenError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Damaged)?;
        let mut in_out = sealed.to_vec();
        let aad = owner.key();
        let clear = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(clear.to_vec())
            .map(Secret::new)
            .map_err(|_| OpenError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_only_for_their_subscription_and_key() {
        let key = CredentialsKey::from_bytes(&[7u8; 32]);
        let owner = SubscriptionId::new_random();
        let secret = Secret::new("Circle of Life");
        let sealed = key.seal(&secret, owner);
        assert!(!sealed.as_str().contains("Circle"), "{}", sealed.as_str());
        assert!(sealed.as_str().starts_with(&format!("v1:{}:", key.id())));
        assert_eq!(key.open(&sealed, owner), Ok(secret.clone()));
        // A fresh nonce each time.
        assert_ne!(key.seal(&secret, owner), sealed);
        assert_eq!(
            key.open(&sealed, SubscriptionId::new_random()),
            Err(OpenError::Damaged)
        );
        let other = CredentialsKey::from_bytes(&[8u8; 32]);
        assert!(matches!(
            other.open(&sealed, owner),
            Err(OpenError::OtherKey(_))
        ));
        let mut tampered = sealed.as_str().to_owned();
        tampered.pop();
        tampered.push(if sealed.as_str().ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert_eq!(
            key.open(&SealedSecret::new(tampered), owner),
            Err(OpenError::Damaged)
        );
    }

    #[test]
    fn keys_parse_from_base64_and_are_generated_once_with_mode_0600() {
        assert!(CredentialsKey::parse(&STANDARD.encode([1u8; 32]), "env").is_ok());
        assert!(matches!(
            CredentialsKey::parse("c2hvcnQ=", "env"),
            Err(KeyError::Malformed(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let (first, made) = CredentialsKey::read_or_generate(dir.path()).unwrap();
        assert!(made);
        let (again, made) = CredentialsKey::read_or_generate(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
