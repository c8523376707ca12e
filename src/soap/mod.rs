//! SOAP 1.1/1.2 envelopes, WS-Addressing, faults and XML helpers: the wire format shared by every
//! SOAP protocol herald speaks. Knows nothing of WS-Eventing.

pub mod addressing;
pub mod envelope;
pub mod fault;
pub mod limits;
pub mod xml;
