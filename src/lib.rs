//! herald: a durable callback and event-subscription broker for web services.
//!
//! The layers, each depending only on those below it:
//!
//! - [`http`]: the front doors: axum routers for the SOAP endpoints, the JSON API (publishing,
//!   subscription status), health and metrics.
//! - [`eventing`]: WS-Eventing 2004/01, 2004/08 and W3C 2011: decodes requests into engine calls,
//!   writes responses, maps refusals to each version's faults, builds notifications and
//!   SubscriptionEnd messages.
//! - [`soap`]: SOAP 1.1/1.2 envelopes, WS-Addressing, faults, XML helpers.
//! - [`engine`]: the domain: subscriptions, expiry rules, sources, events. No XML, no HTTP, no SQL.
//! - [`delivery`]: the event log's tail in memory, the group-commit publisher, the dispatcher
//!   (ordered, retried, at-least-once), the endpoint policy and the delivery HTTP client.
//! - [`filter`]: the `FilterEngine` trait and its dialects (XPath 1.0, DPWS actions, topics).
//! - [`store`]: the [`store::Store`] trait and the embedded SQLite store.
//!
//! [`config`] resolves configuration (defaults, file, environment, flags); [`app`] wires the
//! layers into a running server; [`metrics`] holds the Prometheus registry.

pub mod app;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod eventing;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod soap;
pub mod store;
