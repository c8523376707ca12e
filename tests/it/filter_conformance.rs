//! The contract of a [`FilterEngine`]: any engine herald uses must pass this file. It drives the
//! engine through the trait only, with events built in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::domain::event::{Event, EventId};
use herald::domain::subscription::{EventingVersion, Filter, SoapVersion, SourceName, WsaVersion};
use herald::filter::{
    DPWS_2006_ACTION, DPWS_2009_ACTION, EventView, FilterEngine, FilterError, HERALD_TOPIC,
    StandardFilters, XPATH_1999, XPATH_2011,
};

const ORDER: &str = r#"<o:order xmlns:o="urn:orders" id="A-17" total="150"><o:item>book</o:item><o:item>pen</o:item></o:order>"#;

fn view(action: &str, payload: &str) -> EventView {
    EventView::new(Arc::new(Event {
        source: SourceName::parse("default").unwrap(),
        seq: 1,
        id: EventId::new(),
        action: action.to_owned(),
        payload: payload.to_owned(),
        published_at: jiff::Timestamp::now(),
    }))
}

fn filter(dialect: &str, expression: &str, namespaces: &[(&str, &str)]) -> Filter {
    Filter {
        dialect: dialect.to_owned(),
        expression: expression.to_owned(),
        namespaces: namespaces
            .iter()
            .map(|(p, u)| (p.to_string(), u.to_string()))
            .collect(),
    }
}

fn engine() -> impl FilterEngine {
    StandardFilters::new(std::sync::Arc::new(
        herald::eventing::notify::EventingEnvelopes,
    ))
}

const W2011: (EventingVersion, SoapVersion, WsaVersion) = (
    EventingVersion::W3c2011,
    SoapVersion::Soap12,
    WsaVersion::W3c2005,
);
const W2004_12: (EventingVersion, SoapVersion, WsaVersion) = (
    EventingVersion::Aug2004,
    SoapVersion::Soap12,
    WsaVersion::Aug2004,
);
const W2004_11: (EventingVersion, SoapVersion, WsaVersion) = (
    EventingVersion::Aug2004,
    SoapVersion::Soap11,
    WsaVersion::Aug2004,
);

#[track_caller]
fn matches(
    (version, soap, wsa): (EventingVersion, SoapVersion, WsaVersion),
    filter: &Filter,
    action: &str,
    payload: &str,
) -> bool {
    let matcher = engine()
        .compile(filter, version, soap, wsa)
        .unwrap_or_else(|err| panic!("{} does not compile: {err}", filter.expression));
    matcher.matches(&view(action, payload))
}

const O: (&str, &str) = ("o", "urn:orders");

#[test]
fn xpath_2011_evaluates_against_the_event() {
    for (expression, expected) in [
        ("/o:order", true),
        ("o:order", true),
        ("/o:order[@total > 100]", true),
        ("/o:order[@total > 200]", false),
        ("count(/o:order/o:item) = 2", true),
        ("/o:order/o:item[. = 'pen']", true),
        ("starts-with(/o:order/@id, 'A-')", true),
        ("/o:shipment", false),
        ("/*[local-name() = 'order']", true),
        ("1 = 1", true),
        ("'' ", false),
    ] {
        let f = filter(XPATH_2011, expression, &[O]);
        assert_eq!(
            matches(W2011, &f, "urn:orders/created", ORDER),
            expected,
            "{expression}"
        );
    }
}

#[test]
fn xpath_1999_evaluates_against_the_notification_envelope() {
    let s12 = ("s", "http://www.w3.org/2003/05/soap-envelope");
    let s11 = ("s", "http://schemas.xmlsoap.org/soap/envelope/");
    let wsa = ("wsa", "http://schemas.xmlsoap.org/ws/2004/08/addressing");
    let body = filter(XPATH_1999, "s:Body/o:order[@total > 100]", &[s12, O]);
    assert!(matches(W2004_12, &body, "urn:orders/created", ORDER));
    // The context node is the Envelope, so an event-rooted path does not match.
    let event_rooted = filter(XPATH_1999, "/o:order", &[O]);
    assert!(!matches(
        W2004_12,
        &event_rooted,
        "urn:orders/created",
        ORDER
    ));
    let action = filter(
        XPATH_1999,
        "/s:Envelope/s:Header/wsa:Action = 'urn:orders/created'",
        &[s12, wsa],
    );
    assert!(matches(W2004_12, &action, "urn:orders/created", ORDER));
    assert!(!matches(W2004_12, &action, "urn:orders/cancelled", ORDER));
    // The envelope is in the subscriber's SOAP version.
    let soap11 = filter(XPATH_1999, "s:Body/o:order", &[s11, O]);
    assert!(matches(W2004_11, &soap11, "urn:orders/created", ORDER));
    assert!(!matches(W2004_12, &soap11, "urn:orders/created", ORDER));
}

#[test]
fn prefixes_come_from_the_filter_bindings_not_the_document() {
    let other_prefix = filter(XPATH_2011, "/q:order", &[("q", "urn:orders")]);
    assert!(matches(W2011, &other_prefix, "a", ORDER));
    // The default namespace does not apply to XPath 1.0 name tests.
    let unprefixed = filter(XPATH_2011, "/order", &[("", "urn:orders")]);
    assert!(!matches(W2011, &unprefixed, "a", ORDER));
    let unbound = filter(XPATH_2011, "/x:order", &[O]);
    assert!(matches!(
        engine().compile(&unbound, W2011.0, W2011.1, W2011.2),
        Err(FilterError::Invalid(_))
    ));
}

#[test]
fn several_event_elements_sit_in_a_wrapper() {
    let two = format!("{ORDER}{ORDER}");
    let f = filter(
        XPATH_2011,
        "count(/h:Event/o:order) = 2",
        &[O, ("h", "urn:herald:eventing")],
    );
    assert!(matches(W2011, &f, "a", &two));
}

#[test]
fn invalid_expressions_do_not_compile() {
    for expression in [
        "/o:order[",
        "unknown-function()",
        "$undeclared",
        "/o:order]]",
        "((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))",
    ] {
        let f = filter(XPATH_2011, expression, &[O]);
        assert!(
            matches!(
                engine().compile(&f, W2011.0, W2011.1, W2011.2),
                Err(FilterError::Invalid(_))
            ),
            "{expression} should not compile"
        );
    }
    let f = filter(XPATH_2011, "   ", &[]);
    assert_eq!(
        engine().compile(&f, W2011.0, W2011.1, W2011.2).err(),
        Some(FilterError::Empty)
    );
    let f = filter(XPATH_2011, &"1".repeat(5000), &[]);
    assert!(matches!(
        engine().compile(&f, W2011.0, W2011.1, W2011.2),
        Err(FilterError::Invalid(_))
    ));
    let f = filter("urn:example:unknown", "x", &[]);
    assert!(matches!(
        engine().compile(&f, W2011.0, W2011.1, W2011.2),
        Err(FilterError::UnsupportedDialect(_))
    ));
}

#[test]
fn a_hostile_filter_is_stopped_by_its_budget() {
    let big = format!(
        r#"<o:order xmlns:o="urn:orders">{}</o:order>"#,
        "<o:item><o:part/><o:part/></o:item>".repeat(700)
    );
    let hostile = filter(XPATH_2011, "//*[count(//*[count(//*) > 1]) > 1]", &[O]);
    let started = Instant::now();
    assert!(
        !matches(W2011, &hostile, "a", &big),
        "over budget counts as no match"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // A reasonable filter on the same event still works.
    let fine = filter(XPATH_2011, "count(//o:item) = 700", &[O]);
    assert!(matches(W2011, &fine, "a", &big));
}

#[test]
fn a_payload_that_is_not_xml_matches_no_xpath() {
    let f = filter(XPATH_2011, "true()", &[]);
    assert!(!matches(W2011, &f, "a", "<unclosed>"));
}

#[test]
fn dpws_action_lists() {
    for dialect in [DPWS_2006_ACTION, DPWS_2009_ACTION] {
        let f = filter(dialect, "  urn:orders/created\n urn:shipments/sent ", &[]);
        for (action, expected) in [
            ("urn:orders/created", true),
            ("urn:shipments/sent", true),
            ("urn:orders/created/eu", true),
            ("urn:orders/createdX", false),
            ("urn:orders", false),
            ("urn:payments/received", false),
        ] {
            assert_eq!(
                matches(W2004_12, &f, action, ORDER),
                expected,
                "{dialect} {action}"
            );
        }
    }
}

#[test]
fn herald_topics() {
    let f = filter(HERALD_TOPIC, "urn:orders/* urn:shipments/sent", &[]);
    for (action, expected) in [
        ("urn:orders/created", true),
        ("urn:orders/", true),
        ("urn:shipments/sent", true),
        ("urn:shipments/sent/eu", false),
        ("urn:payments", false),
    ] {
        assert_eq!(matches(W2011, &f, action, ORDER), expected, "{action}");
    }
}
