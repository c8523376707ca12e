//! Fuzzes everything herald does with a SOAP request before touching the store: envelope
//! parsing under limits, WS-Addressing headers, action dispatch and WS-Eventing decoding, in
//! both SOAP versions and at both endpoints. Any panic is a bug.
#![no_main]

use herald::domain::subscription::SoapVersion;
use herald::eventing::wsman::ResourceTable;
use herald::eventing::{Endpoint, SoapRequest, inspect};
use herald::soap::envelope::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the endpoint, the media type and whether an HTTP action is sent.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let endpoint = if selector & 1 == 0 {
        Endpoint::Source
    } else {
        Endpoint::Manager
    };
    let media_soap = match (selector >> 1) & 3 {
        0 => None,
        1 => Some(SoapVersion::Soap11),
        _ => Some(SoapVersion::Soap12),
    };
    let http_action = (selector & 8 != 0).then_some("http://www.w3.org/2011/03/ws-evt/Subscribe");
    let resources = ResourceTable::default();
    let request = SoapRequest {
        source: "default",
        resources: &resources,
        endpoint,
        base_url: "http://127.0.0.1:8080",
        http_action,
        media_soap,
        publish_allowed: selector & 16 != 0,
        body,
    };
    let _ = inspect(&request, Limits::default());
});
