//! Configuration layers, defaults and every refusal with its exact reason.

use super::*;
use crate::domain::expiry::XsDuration;

#[test]
fn defaults_host_one_source() {
    let config = Config::defaults();
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert_eq!(config.sources.len(), 1);
    assert_eq!(config.sources[0].name.as_str(), "default");
    assert_eq!(config.max_body_bytes, 1 << 20);
    assert_eq!(config.log_format, LogFormat::Text);
}

#[test]
fn the_log_format_is_layered_like_every_key() {
    let file = parse_toml("log_format = \"json\"", "test").unwrap();
    let config = Config::resolve(&ServeArgs::default(), Some(file)).unwrap();
    assert_eq!(config.log_format, LogFormat::Json);
    let file = parse_toml("log_format = \"json\"", "test").unwrap();
    let args = ServeArgs {
        log_format: Some("text".into()),
        ..ServeArgs::default()
    };
    let config = Config::resolve(&args, Some(file)).unwrap();
    assert_eq!(config.log_format, LogFormat::Text, "the flag wins");
}

#[test]
fn flags_beat_file_and_file_beats_defaults() {
    let file = parse_toml(
        r#"
        listen = "127.0.0.1:9000"
        max_body_bytes = 4096
        [sources.orders]
        max_expires = "unbounded"
        accept_datetime = false
        "#,
        "test",
    )
    .unwrap();
    let args = ServeArgs {
        listen: Some("127.0.0.1:9100".into()),
        ..ServeArgs::default()
    };
    let config = Config::resolve(&args, Some(file)).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9100");
    assert_eq!(config.max_body_bytes, 4096);
    let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["orders"],
        "a sources table replaces the built-in one"
    );
    let orders = &config.sources[0];
    assert_eq!(orders.expiry.max, None);
    assert!(!orders.expiry.accept_datetime);
    assert_eq!(orders.expiry.default, XsDuration::parse("PT1H").unwrap());
}

/// Each refused configuration, with the exact reason herald gives.
#[test]
fn bad_values_are_refused_with_the_reason() {
    for (text, reason) in [
        (
            "[sources.a]\nmin_expires = \"P1W\"",
            "invalid configuration: source 'a': min_expires = 'P1W' is not an xs:duration",
        ),
        (
            "[sources.a]\nmin_expires = \"P2D\"",
            "invalid configuration: source 'a': min_expires is longer than max_expires",
        ),
        (
            "[sources.a]\ndefault_expires = \"PT1S\"\nmin_expires = \"PT1M\"",
            "invalid configuration: source 'a': default_expires is shorter than min_expires",
        ),
        (
            "[sources.a]\nmax_expires = \"-PT1H\"",
            "invalid configuration: source 'a': max_expires must be positive",
        ),
        (
            "[sources.a]\nretry_initial = \"PT2H\"",
            "invalid configuration: source 'a': retry_initial is longer than retry_max",
        ),
        (
            "[sources.\"a/b\"]",
            "invalid configuration: source 'a/b': names are 1-64 characters from A-Z a-z 0-9 . _ -",
        ),
        (
            "sources = {}",
            "invalid configuration: at least one source must be configured",
        ),
        (
            "max_body_bytes = 10",
            "invalid configuration: max_body_bytes must be at least 1024",
        ),
        (
            "public_url = \"ftp://x\"",
            "invalid configuration: public_url must be an absolute http(s) URL, not 'ftp://x'",
        ),
        (
            "log_level = \"loud\"",
            "invalid configuration: unknown log_level 'loud'",
        ),
        (
            "log_format = \"xml\"",
            "invalid configuration: unknown log_format 'xml' (text or json)",
        ),
        (
            "sweep_interval_ms = 5",
            "invalid configuration: sweep_interval_ms must be between 10 and 1000",
        ),
        (
            "api_token = \" \"",
            "invalid configuration: api_token must not be empty",
        ),
        (
            "database = \"mysql://x\"",
            "invalid configuration: database must be a postgres:// URL",
        ),
        (
            "[cluster]\nnode_id = \"a b\"",
            "invalid configuration: cluster.node_id must be 1-64 characters from A-Z a-z 0-9 . _ -",
        ),
        (
            "[cluster]\nlease_ttl_ms = 100",
            "invalid configuration: cluster.lease_ttl_ms must be 400-600000",
        ),
        (
            "[cluster]\npoll_interval_ms = 0",
            "invalid configuration: cluster.poll_interval_ms must be 10-60000",
        ),
        (
            "[delivery]\nmax_concurrency = 0",
            "invalid configuration: delivery.max_concurrency must be 1-100000",
        ),
        (
            "[delivery]\nrequest_timeout_ms = 0",
            "invalid configuration: delivery.request_timeout_ms must be 1-3600000",
        ),
        (
            "[delivery]\nmemory_events = 1",
            "invalid configuration: delivery.memory_events must be 16-10000000",
        ),
        (
            "[delivery]\nevent_retention = \"1h\"",
            "invalid configuration: delivery.event_retention = '1h' is not a non-negative xs:duration",
        ),
        (
            "[delivery]\nallowed_hosts = [\"*.*.com\"]",
            "invalid configuration: allowed_hosts: '*.*.com' is not a host name or *.domain pattern",
        ),
        (
            "[delivery]\nallowed_networks = [\"10.0.0.0/33\"]",
            "invalid configuration: allowed_networks: '10.0.0.0/33' has an invalid prefix length",
        ),
        (
            "[contexts.cart]\nidle_ttl = \"PT1H\"",
            "invalid configuration: context 'cart': backend is required",
        ),
        (
            "[contexts.cart]\nbackend = \"ftp://x/y\"",
            "invalid configuration: context 'cart': backend = 'ftp://x/y' is not http or https",
        ),
        (
            "[contexts.cart]\nbackend = \"http://b/\"\ncarrier = \"pigeon\"",
            "invalid configuration: context 'cart': carrier = 'pigeon': use \"header\" or \"cookie\"",
        ),
        (
            "[contexts.cart]\nbackend = \"http://b/\"\nunknown_instance = \"maybe\"",
            "invalid configuration: context 'cart': unknown_instance = 'maybe': use \"refuse\" or \"pass\"",
        ),
        (
            "[contexts.cart]\nbackend = \"http://b/\"\nmax_instances = 0",
            "invalid configuration: context 'cart': max_instances must be at least 1",
        ),
        (
            "[contexts.cart]\nbackend = \"http://b/\"\nidle_ttl = \"PT0S\"",
            "invalid configuration: context 'cart': idle_ttl must be positive",
        ),
        (
            "[contexts.a-name-that-is-far-too-long-for-a-log]\nbackend = \"http://b/\"",
            "invalid configuration: context 'a-name-that-is-far-too-long-for-a-log': names are 1-31 characters from A-Z a-z 0-9 . _ -",
        ),
    ] {
        let result = parse_toml(text, "test")
            .and_then(|file| Config::resolve(&ServeArgs::default(), Some(file)));
        match result {
            Ok(_) => panic!("{text:?} should be refused"),
            Err(err) => assert_eq!(err.to_string(), reason, "{text:?}"),
        }
    }
}

#[test]
fn a_context_service_takes_its_keys_and_the_sources_retry_defaults() {
    let file = parse_toml(
        r#"
        [contexts.cart]
        backend = "http://127.0.0.1:9100/ShoppingCart"
        idle_ttl = "PT10M"
        carrier = "cookie"
        unknown_instance = "pass"
        retry_initial = "PT1S"
        "#,
        "test",
    )
    .unwrap();
    let config = Config::resolve(&ServeArgs::default(), Some(file)).unwrap();
    let cart = &config.contexts[0];
    assert_eq!(cart.name.as_str(), "cart");
    assert_eq!(cart.backend, "http://127.0.0.1:9100/ShoppingCart");
    assert_eq!(cart.idle_ttl, Duration::from_secs(600));
    assert_eq!(cart.carrier, crate::engine::ContextCarrier::Cookie);
    assert_eq!(
        cart.unknown_instance,
        crate::engine::UnknownInstance::PassOn
    );
    assert_eq!(cart.retry.initial, Duration::from_secs(1));
    assert_eq!(cart.retry.give_up_after, Duration::from_secs(86_400));
    assert_eq!(cart.max_instances, Some(100_000));
    assert!(Config::defaults().contexts.is_empty());
}

#[test]
fn unknown_keys_and_wrong_types_name_the_file_and_the_key() {
    let err = parse_toml("unknown_key = 1", "herald.toml").unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("invalid configuration in herald.toml: ")
            && message.contains("unknown field `unknown_key`"),
        "{message}"
    );
    let err = parse_toml("max_body_bytes = \"big\"", "herald.toml").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("max_body_bytes") && message.contains("invalid type"),
        "{message}"
    );
}

#[test]
fn flags_are_checked_like_the_file() {
    let args = ServeArgs {
        allowed_networks: Some(vec!["nope".into()]),
        ..ServeArgs::default()
    };
    let err = Config::resolve(&args, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: allowed_networks: 'nope' is not an IP address or CIDR network"
    );
}

#[test]
fn resource_uris_name_one_source_each() {
    let resolve = |text: &str| {
        let file = parse_toml(text, "herald.toml").unwrap();
        Config::resolve(&ServeArgs::default(), Some(file))
    };
    let uri = "http://schemas.microsoft.com/wbem/wsman/1/windows/EventLog";
    let config = resolve(&format!(
        "[sources.eventlog]\nresource_uris = [\"{uri}\"]\n[sources.other]\n"
    ))
    .unwrap();
    let of = |name: &str| {
        config
            .sources
            .iter()
            .find(|s| s.name.as_str() == name)
            .unwrap()
            .resource_uris
            .clone()
    };
    assert_eq!(of("eventlog"), [uri]);
    assert!(of("other").is_empty(), "not inherited");
    let twice = resolve(&format!(
        "[sources.a]\nresource_uris = [\"{uri}\"]\n[sources.b]\nresource_uris = [\"{uri}\"]\n"
    ))
    .unwrap_err();
    assert!(
        twice
            .to_string()
            .contains("is declared by sources 'a' and 'b'"),
        "{twice}"
    );
    let relative = resolve("[sources.a]\nresource_uris = [\"EventLog\"]\n").unwrap_err();
    assert!(
        relative
            .to_string()
            .contains("'EventLog' is not an absolute URI"),
        "{relative}"
    );
}

#[test]
fn sink_security_keys_are_read_and_checked() {
    let config = Config::defaults();
    assert!(config.sink_security.client_certificate.is_none());
    assert!(config.sink_security.credentials_key_file.is_none());
    let file = parse_toml(
        r#"
        [delivery]
        ca_certificates = "/etc/herald/ca.pem"
        client_certificate = "/etc/herald/client.pem"
        client_key = "/etc/herald/client.key"
        credentials_key_file = "/etc/herald/file.key"
        "#,
        "test",
    )
    .unwrap();
    let args = ServeArgs {
        credentials_key_file: Some("/run/flag.key".into()),
        credentials_key: Some(crate::domain::secret::Secret::new("c2VjcmV0")),
        ..ServeArgs::default()
    };
    let config = Config::resolve(&args, Some(file)).unwrap();
    let security = &config.sink_security;
    assert_eq!(
        security.ca_certificates.as_deref(),
        Some(Path::new("/etc/herald/ca.pem"))
    );
    assert_eq!(
        security.client_key.as_deref(),
        Some(Path::new("/etc/herald/client.key"))
    );
    assert_eq!(
        security.credentials_key_file.as_deref(),
        Some(Path::new("/run/flag.key")),
        "the flag wins"
    );
    assert!(
        !format!("{config:?}").contains("c2VjcmV0"),
        "the key never prints"
    );
    let half = parse_toml("[delivery]\nclient_certificate = \"/c.pem\"\n", "test").unwrap();
    let err = Config::resolve(&ServeArgs::default(), Some(half)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: delivery.client_certificate and delivery.client_key go together"
    );
}
