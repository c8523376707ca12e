//! Authenticating to a subscriber's sink, as a WS-Management subscriber asks with `wsman:Auth`
//! (DMTF DSP0226): HTTP Basic on every request, HTTP Digest answering the sink's challenge
//! (its nonce used again with the next count, so most messages cost one request), and for the
//! mutual profiles herald's client certificate, presented by a second HTTP client that only
//! these subscriptions use. Authentication applies to every message to NotifyTo's origin
//! (scheme, host, port): notifications, heartbeats, and SubscriptionEnd when EndTo is there too;
//! credentials are never sent to another origin.
//! What herald keeps for it (certificates, the credentials key, Digest sessions) is in
//! `sink_security.rs`.

use std::sync::Arc;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use super::client::{DeliveryClient, Target};
use super::credentials::{CredentialsKey, OpenError};
use super::digest;
use super::policy::EndpointPolicy;
use super::sink_security::SinkClients;
pub use super::sink_security::{SecurityError, SinkSecurity, SinkSecuritySettings, same_origin};
use super::transport::{Attempt, ClientSettings, Exchange, Outgoing, builder};
use crate::domain::subscription::{Subscription, SubscriptionId};
use crate::domain::wsman::HttpScheme;

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
    /// NotifyTo's origin. `notify_to`: NotifyTo's address as its reader keeps it parsed, used
    /// when the message goes there.
    pub async fn send_to(
        &self,
        subscription: &Subscription,
        notify_to: Option<&url::Url>,
        message: &Outgoing,
    ) -> Attempt {
        let auth = subscription
            .wsman
            .as_ref()
            .and_then(|wsman| wsman.auth.as_ref())
            .filter(|_| same_origin(&message.url, &subscription.notify_to.address));
        let Some(auth) = auth else {
            let target = match notify_to {
                Some(url) if message.url == subscription.notify_to.address => Target::Parsed(url),
                _ => Target::Address(&message.url),
            };
            return self.send_towards(message, target).await;
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
            Target::Address(&message.url),
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
