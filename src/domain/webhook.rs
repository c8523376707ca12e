//! Webhook subscriptions: readers of a source's log delivered as plain HTTP POSTs of the event
//! as published, signed per Standard Webhooks v1, or as CloudEvents. The signing secrets are
//! kept with the subscription; during a rotation the previous one signs too, until its grace
//! period ends.

use base64::Engine as _;
use jiff::Timestamp;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The namespace of the element herald keeps a JSON event in (so SOAP subscribers and XPath
/// filters see it as XML, and webhooks get the JSON back exactly).
pub const JSON_EVENT_NS: &str = "urn:herald:json";

/// The start and end of a stored JSON event.
const JSON_OPEN: &str = "<json xmlns=\"urn:herald:json\">";
const JSON_CLOSE: &str = "</json>";

/// A webhook subscription's signing secrets: the current one first, then a previous one that
/// still signs until its `until`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookSettings {
    /// The secrets, current first.
    pub secrets: Vec<WebhookSecret>,
}

/// One signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    /// `whsec_` and the base64 of the key.
    pub secret: String,
    /// When it stops signing (a rotated-out secret); `None` for the current one.
    pub until: Option<Timestamp>,
}

impl WebhookSettings {
    /// Settings that sign with `secret` alone.
    pub fn signed_with(secret: String) -> WebhookSettings {
        WebhookSettings {
            secrets: vec![WebhookSecret {
                secret,
                until: None,
            }],
        }
    }

    /// The keys that sign at `now`: the current one and any previous one still in its grace.
    pub fn keys_at(&self, now: Timestamp) -> Vec<Vec<u8>> {
        self.secrets
            .iter()
            .filter(|secret| secret.until.is_none_or(|until| until > now))
            .filter_map(|secret| secret_key(&secret.secret))
            .collect()
    }

    /// These settings with `secret` current, the current one signing until `until`, and any
    /// earlier one still in its grace at `now` kept until its own end.
    pub fn rotated(&self, secret: String, until: Timestamp, now: Timestamp) -> WebhookSettings {
        let mut secrets = vec![WebhookSecret {
            secret,
            until: None,
        }];
        for kept in &self.secrets {
            match kept.until {
                None => secrets.push(WebhookSecret {
                    secret: kept.secret.clone(),
                    until: Some(until),
                }),
                Some(end) if end > now => secrets.push(kept.clone()),
                Some(_) => {}
            }
        }
        WebhookSettings { secrets }
    }
}

/// A fresh secret: `whsec_` and 32 bytes from the operating system's secure random source, in
/// base64; `None` when that source fails.
pub fn new_secret() -> Option<String> {
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut key).ok()?;
    Some(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// The key of a secret: `whsec_` and the base64 of 24 to 64 bytes; `None` when it is not one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// The stored form of a JSON event: its text, escaped, in herald's JSON element.
pub fn wrap_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + JSON_OPEN.len() + JSON_CLOSE.len() + 16);
    out.push_str(JSON_OPEN);
    for c in json.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out.push_str(JSON_CLOSE);
    out
}

/// The JSON text of a stored JSON event; `None` for an XML event.
pub fn unwrap_json(payload: &str) -> Option<String> {
    let inner = payload.strip_prefix(JSON_OPEN)?.strip_suffix(JSON_CLOSE)?;
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (text, len) = [
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&amp;", '&'),
            ("&#13;", '\r'),
        ]
        .iter()
        .find(|(entity, _)| rest.starts_with(entity))
        .map(|(entity, c)| (*c, entity.len()))?;
        out.push(text);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_events_come_back_exactly() {
        for json in [
            r#"{"a":"<b> & </c>","n":1}"#,
            "[1,2]",
            "\"x\r\ny\"",
            "{}",
            r#"{"amp":"&amp;lt;"}"#,
        ] {
            let stored = wrap_json(json);
            assert!(roxmltree::Document::parse(&stored).is_ok(), "{stored}");
            assert_eq!(unwrap_json(&stored).as_deref(), Some(json));
        }
        assert_eq!(unwrap_json("<a xmlns=\"urn:x\"/>"), None);
    }

    #[test]
    fn secrets_are_whsec_and_24_to_64_bytes() {
        let secret = new_secret().unwrap();
        assert_eq!(secret_key(&secret).map(|k| k.len()), Some(32));
        assert_eq!(secret_key("whsec_AAAA"), None);
        assert_eq!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    }

    #[test]
    fn a_rotated_out_secret_signs_until_its_grace_ends() {
        let now = Timestamp::UNIX_EPOCH;
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap();
        let settings = WebhookSettings::signed_with(new_secret().unwrap()).rotated(
            new_secret().unwrap(),
            later,
            now,
        );
        assert_eq!(settings.keys_at(now).len(), 2);
        assert_eq!(settings.keys_at(later).len(), 1);
        assert_eq!(settings.secrets[0].until, None);
        // Rotated again within the grace: the first one still signs until its own end.
        let much_later = later
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap();
        let again = settings.rotated(new_secret().unwrap(), much_later, now);
        assert_eq!(again.keys_at(now).len(), 3);
        assert_eq!(again.keys_at(later).len(), 2);
        assert_ne!(new_secret().unwrap(), new_secret().unwrap());
    }
}
