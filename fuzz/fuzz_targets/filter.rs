//! Fuzzes filters: compiling an expression in each dialect (XPath 1.0 on the pinned oxml,
//! action lists, topics) and evaluating it against an event, in every context a subscriber's
//! version gives. The input is `selector expression \0 event`. Any panic is a bug; hostile
//! expressions are bounded by the compile limits and the evaluation budget. Run with inputs
//! larger than the default 4 KB: `-max_len=65536`.
#![no_main]

use std::sync::Arc;

use herald::domain::event::{Event, EventId};
use herald::domain::subscription::{EventingVersion, Filter, SoapVersion, SourceName, WsaVersion};
use herald::eventing::notify::EventingEnvelopes;
use herald::filter::{EventView, FilterEngine, SUPPORTED_DIALECTS, StandardFilters};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (expression, payload) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (
            rest,
            &b"<o:order xmlns:o=\"urn:o\" total=\"150\"><o:line n=\"1\"/></o:order>"[..],
        ),
    };
    let (Ok(expression), Ok(payload)) = (
        std::str::from_utf8(expression),
        std::str::from_utf8(payload),
    ) else {
        return;
    };
    let dialect = SUPPORTED_DIALECTS[usize::from(selector) % SUPPORTED_DIALECTS.len()];
    let version = [
        EventingVersion::Jan2004,
        EventingVersion::Aug2004,
        EventingVersion::W3c2011,
    ][usize::from(selector >> 3) % 3];
    let soap = if selector & 0x20 == 0 {
        SoapVersion::Soap11
    } else {
        SoapVersion::Soap12
    };
    let addressing = [
        WsaVersion::Mar2003,
        WsaVersion::Aug2004,
        WsaVersion::W3c2005,
    ][usize::from(selector >> 6) % 3];
    let filter = Filter {
        dialect: dialect.to_owned(),
        expression: expression.trim().to_owned(),
        namespaces: vec![
            ("o".into(), "urn:o".into()),
            ("".into(), "urn:default".into()),
        ],
    };
    let filters = StandardFilters::new(Arc::new(EventingEnvelopes));
    let Ok(matcher) = filters.compile(&filter, version, soap, addressing) else {
        return;
    };
    let Some(source) = SourceName::parse("fuzz") else {
        return;
    };
    let event = Event {
        source,
        seq: 1,
        id: EventId::new(),
        action: "urn:o/created".into(),
        payload: payload.to_owned(),
        published_at: jiff::Timestamp::UNIX_EPOCH,
    };
    let view = EventView::new(Arc::new(event));
    let _ = matcher.matches(&view);
    let _ = matcher.matches(&view);
});
