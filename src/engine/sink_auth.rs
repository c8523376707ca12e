//! The rule for a subscriber's sink authentication (`wsman:Auth`): herald takes a profile only
//! when it can keep it — the mutual profiles need its client certificate, Basic and Digest need
//! a credentials key to seal the password with before it is stored.

use super::{Engine, EngineError};
use crate::domain::secret::Secret;
use crate::domain::subscription::Subscription;

impl Engine {
    /// Checks herald can authenticate to `subscription`'s sink as asked, and seals `password`
    /// into it (bound to its id).
    pub(super) fn secure_sink_auth(
        &self,
        subscription: &mut Subscription,
        password: Option<Secret>,
    ) -> Result<(), EngineError> {
        let id = subscription.id;
        let Some(auth) = subscription
            .wsman
            .as_mut()
            .and_then(|wsman| wsman.auth.as_mut())
        else {
            return Ok(());
        };
        let client = self.delivery.client();
        if auth.profile.mutual() && !client.has_client_certificate() {
            return Err(EngineError::SinkAuthUnavailable(
                "herald has no client certificate to present to the event sink (the https/mutual \
                 profiles need delivery.client_certificate and delivery.client_key)"
                    .into(),
            ));
        }
        if auth.profile.http_scheme().is_none() {
            return Ok(());
        }
        let Some(key) = client.credentials_key() else {
            return Err(EngineError::SinkAuthUnavailable(
                "herald cannot keep credentials for the event sink: no credentials key is \
                 configured (HERALD_CREDENTIALS_KEY or delivery.credentials_key_file, the same \
                 on every node sharing the database)"
                    .into(),
            ));
        };
        let password = password.ok_or_else(|| {
            EngineError::SinkAuthUnavailable(
                "the profile needs the event sink's password, and none was given".into(),
            )
        })?;
        auth.password = Some(key.seal(&password, id));
        Ok(())
    }
}
