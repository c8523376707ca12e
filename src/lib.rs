//! herald: a durable callback and event-subscription broker for web services.
//!
//! The layers, each depending only on those below it (`farm-studio look` draws them):
//!
//! - [`http`]: the front doors: the accept loop with its connection limits, axum routers for
//!   the SOAP endpoints (eventing, context services), the JSON API (publishing, subscriptions,
//!   context instances and their callbacks), health, readiness and metrics.
//! - [`eventing`]: WS-Eventing 2004/01, 2004/08 and W3C 2011: decodes requests into engine calls,
//!   writes responses, maps refusals to each version's faults, builds notifications and
//!   SubscriptionEnd messages.
//! - [`webhook`]: webhook subscriptions' messages: the event as published, signed per Standard
//!   Webhooks v1, or a CloudEvent (binary or structured mode), and the JSON notice of an end.
//! - [`context`]: the .NET context exchange protocol (seed 000): the `Context` header, the
//!   `WscContext` cookie and `CallbackContext` read and written, and the gateway that forwards a
//!   context service's requests to its backend.
//! - [`engine`]: the `Engine` service: every lifecycle rule, once (subscribe, renew, adopt, end
//!   for any reason, expire, capacity, filter compile, endpoint check), over delivery, filters
//!   and the store. No XML, no HTTP, no SQL.
//! - [`delivery`]: logs and readers: the logs' tails and group-commit appender, the reader
//!   registry and workers (ordered, retried, at-least-once), this node's lease and cluster
//!   signals, housekeeping (SubscriptionEnd outbox, compaction), the endpoint policy and the
//!   delivery HTTP client. It reaches the engine back only through its `Lifecycle` port.
//! - [`filter`]: the `FilterEngine` trait and its dialects (XPath 1.0, DPWS actions, topics).
//! - [`store`]: the [`store::Store`] trait, the embedded SQLite store and PostgreSQL.
//! - [`soap`]: SOAP 1.1/1.2 envelopes, XML limits, WS-Addressing, faults, XML helpers.
//! - [`domain`]: the ground floor every layer may use: ids, subscriptions, events, expiry
//!   values and rules, the clock.
//!
//! [`config`] resolves configuration (defaults, file, environment, flags); [`app`] wires the
//! layers into a running server; [`metrics`] holds the Prometheus registry; [`allocator`] is the
//! binaries' global allocator (mimalloc) and [`memory`] how they take memory from the kernel.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod config;
pub mod context;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod eventing;
pub mod filter;
pub mod http;
pub mod invoke;
pub mod memory;
pub mod metrics;
pub mod soap;
pub mod store;
pub mod webhook;
