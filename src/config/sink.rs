//! `[delivery]`'s keys for authenticating to sinks (WS-Management `wsman:Auth`): extra CA
//! certificates trusted for sinks, herald's client certificate and key, and where the
//! credentials key comes from.

use std::path::PathBuf;

use super::ConfigError;
use super::args::{DeliveryFile, ServeArgs};
use crate::delivery::sink_auth::SinkSecuritySettings;

/// The sink security settings of the flags, environment, file and defaults.
pub(super) fn sink_security(
    args: &ServeArgs,
    file: &DeliveryFile,
    base: &DeliveryFile,
) -> Result<SinkSecuritySettings, ConfigError> {
    let path = |value: &Option<PathBuf>, default: &Option<PathBuf>| {
        value
            .clone()
            .or_else(|| default.clone())
            .filter(|path| !path.as_os_str().is_empty())
    };
    let settings = SinkSecuritySettings {
        ca_certificates: path(&file.ca_certificates, &base.ca_certificates),
        client_certificate: path(&file.client_certificate, &base.client_certificate),
        client_key: path(&file.client_key, &base.client_key),
        credentials_key_file: path(&args.credentials_key_file, &None)
            .or_else(|| path(&file.credentials_key_file, &base.credentials_key_file)),
        credentials_key: args.credentials_key.clone(),
    };
    if settings.client_certificate.is_some() != settings.client_key.is_some() {
        return Err(ConfigError::Invalid(
            "delivery.client_certificate and delivery.client_key go together".into(),
        ));
    }
    if settings
        .credentials_key
        .as_ref()
        .is_some_and(|key| key.expose().trim().is_empty())
    {
        return Err(ConfigError::Invalid(
            "HERALD_CREDENTIALS_KEY must not be empty".into(),
        ));
    }
    Ok(settings)
}
