//! Fuzzes the batch publish parser (`POST /api/v1/sources/{source}/events/batch`): the linear
//! pre-scan, the XML parser under limits and the reading of `Event` elements. Any panic is a
//! bug. Run with inputs up to the body limit: `-max_len=1048576`.
#![no_main]

use herald::http::batch_events;
use herald::soap::envelope::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = batch_events(data, Limits::default()) {
        assert!(!events.is_empty(), "an accepted batch holds events");
        for event in events {
            assert!(!event.action.is_empty() && !event.payload.is_empty());
        }
    }
});
