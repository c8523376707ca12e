//! herald's integration tests: one binary, real HTTP on loopback, real SOAP messages, the real
//! SQLite store in a temporary directory, real sink servers that record what they receive, and
//! the real binary for crash tests.

mod auth_sink;
mod channel_callbacks;
mod channels;
mod channels_cluster;
mod cli;
mod cli_webhooks;
mod cluster;
mod config;
mod connections;
mod console;
mod contexts;
mod contexts_cluster;
mod delivery;
mod endpoint_policy;
mod expiry;
mod failures;
mod faults;
mod filter_conformance;
mod filters;
mod harness;
mod hostile_xml;
mod invocations;
mod limits;
mod logs;
mod openapi;
mod operations;
mod publish;
mod readme;
mod restart;
mod retention;
mod samples;
mod sink;
mod store_failures;
mod upgrade;
mod webhooks;
mod wsdl;
mod wsdl_generators;
mod wsman;
mod wsman_auth;
mod wsman_auth_secrets;
mod wsman_retry;
