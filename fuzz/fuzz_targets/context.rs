//! Fuzzes what a context service reads from a client: the `WscContext` cookie, and a SOAP
//! envelope's `Context` and `CallbackContext` headers; and what herald writes from them: a
//! Context read must write back as itself, and the header herald inserts into an envelope must
//! leave it well-formed with the header in place. Any panic or failed assertion is a bug.
//! Run with `-max_len=65536`.
#![no_main]

use herald::context::gateway::insert_header;
use herald::context::wire::{
    CALLBACK_CONTEXT_NS, CONTEXT_NS, Context, read_callback_context, read_context, read_cookie,
};
use herald::soap::envelope::{Envelope, Limits, parse_document};
use libfuzzer_sys::fuzz_target;

fn round_trips(context: &Context) {
    let written = context.to_xml();
    let document = roxmltree::Document::parse(&written).expect("a written Context parses");
    let read = read_context(document.root_element()).expect("a written Context reads");
    assert_eq!(&read, context, "a Context reads back as itself");
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    // The bytes as a Cookie header.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(Some(context)) = read_cookie(std::iter::once(text), limits)
    {
        round_trips(&context);
    }
    // The bytes as an envelope.
    let Ok(document) = parse_document(data, limits) else {
        return;
    };
    let Ok(envelope) = Envelope::from_document(&document) else {
        return;
    };
    for block in envelope.header_blocks() {
        let name = block.tag_name();
        if name.namespace() == Some(CONTEXT_NS) && name.name() == "Context" {
            if let Ok(context) = read_context(block) {
                round_trips(&context);
            }
        } else if name.namespace() == Some(CALLBACK_CONTEXT_NS) && name.name() == "CallbackContext"
        {
            let _ = read_callback_context(block);
        }
    }
    let text = std::str::from_utf8(data)
        .unwrap_or_default()
        .trim_start_matches('\u{feff}');
    let header = Context::instance("fuzz").to_xml();
    if let Some(inserted) = insert_header(text, &document, &header) {
        let document =
            roxmltree::Document::parse(&inserted).expect("the envelope stays well-formed");
        let envelope = Envelope::from_document(&document).expect("it stays an envelope");
        assert!(
            envelope
                .header_blocks()
                .any(|block| read_context(block).is_ok_and(|c| c.instance_id() == Some("fuzz"))),
            "the inserted Context is a header block"
        );
    }
});
