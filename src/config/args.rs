//! What herald reads its settings from: the flags of `herald serve` (each with its `HERALD_*`
//! environment variable, merged by clap) and the TOML file's shape.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Options of `herald serve`; each falls back to its environment variable, then to the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see config/default.toml for every key).
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory of the embedded SQLite store [default: ./herald-data].
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Absolute URL clients reach herald at, for SubscriptionManager addresses [default: from
    /// the request's Host header].
    #[arg(long, env = "HERALD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest request body in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, env = "HERALD_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text (for people) or json (one object a line, for log collectors)
    /// [default: text].
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Expiry sweeper interval in milliseconds [default: 250].
    #[arg(long, env = "HERALD_SWEEP_INTERVAL_MS", value_name = "MS")]
    pub sweep_interval_ms: Option<u64>,
    /// Bearer token required for publishing and the JSON API [default: none, open].
    #[arg(
        long,
        env = "HERALD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// PostgreSQL URL (postgres://user@host:port/database) of a database several nodes may
    /// share [default: none: the embedded SQLite store in --data-dir].
    #[arg(
        long,
        env = "HERALD_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// This node's name among the nodes sharing a database; unique per running node
    /// [default: on PostgreSQL a random name kept in the data directory, "embedded" on SQLite].
    #[arg(long, env = "HERALD_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// How long a node's lease lasts unless renewed, in milliseconds: another node takes its
    /// subscriptions over this long after it dies [default: 10000].
    #[arg(long, env = "HERALD_LEASE_TTL_MS", value_name = "MS")]
    pub lease_ttl_ms: Option<u64>,
    /// Networks (CIDR) subscribers may be in despite being loopback/private, comma-separated
    /// [default: none].
    #[arg(
        long,
        env = "HERALD_ALLOWED_NETWORKS",
        value_name = "CIDRS",
        value_delimiter = ','
    )]
    pub allowed_networks: Option<Vec<String>>,
    /// Host names accepted at Subscribe although they do not resolve, comma-separated; exact
    /// or `*.example.com` [default: none: a name must resolve].
    #[arg(
        long,
        env = "HERALD_ALLOWED_HOSTS",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
    /// File holding the key that seals the passwords WS-Management subscribers give for their
    /// sinks (base64 of 32 bytes) [default: on SQLite, credentials.key in --data-dir, made on
    /// first start; on PostgreSQL none: Basic and Digest sink authentication are refused].
    #[arg(long, env = "HERALD_CREDENTIALS_KEY_FILE", value_name = "FILE")]
    pub credentials_key_file: Option<PathBuf>,
    /// The key itself (base64 of 32 bytes), ahead of the file; give it in the environment.
    #[arg(
        long,
        env = "HERALD_CREDENTIALS_KEY",
        value_name = "BASE64",
        hide = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub credentials_key: Option<crate::domain::secret::Secret>,
}

fn secret(text: &str) -> Result<crate::domain::secret::Secret, String> {
    Ok(crate::domain::secret::Secret::new(text))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) public_url: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) log_level: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) sweep_interval_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) header_timeout_ms: Option<u64>,
    pub(super) body_timeout_ms: Option<u64>,
    pub(super) api_token: Option<String>,
    pub(super) database: Option<String>,
    pub(super) cluster: Option<ClusterFile>,
    pub(super) delivery: Option<DeliveryFile>,
    pub(super) sources: Option<BTreeMap<String, SourceFile>>,
    pub(super) contexts: Option<BTreeMap<String, ContextFile>>,
    pub(super) invocations: Option<InvocationsFile>,
    pub(super) invokers: Option<BTreeMap<String, InvokerFile>>,
    pub(super) agents: Option<BTreeMap<String, AgentFile>>,
    pub(super) channels: Option<ChannelsFile>,
}

/// `[channels]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelsFile {
    pub(super) ttl: Option<String>,
    pub(super) connected_for: Option<String>,
    pub(super) grace: Option<String>,
    pub(super) max_notification_bytes: Option<usize>,
    pub(super) queue_cap: Option<u64>,
    pub(super) daily_limit: Option<u64>,
    pub(super) keep_ended: Option<String>,
}

/// `[invocations]`: defaults of invokers and agents.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvocationsFile {
    pub(super) default_agent: Option<String>,
    pub(super) error_agent: Option<String>,
    pub(super) visibility_timeout: Option<String>,
}

/// `[invokers.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvokerFile {
    pub(super) url: Option<String>,
    pub(super) soap: Option<String>,
    pub(super) action: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) concurrency: Option<usize>,
    pub(super) idempotency_window: Option<String>,
    pub(super) max_payload_bytes: Option<usize>,
    pub(super) retry_initial: Option<String>,
    pub(super) retry_max: Option<String>,
    pub(super) retry_after_cap: Option<String>,
    pub(super) give_up_after: Option<String>,
    pub(super) parameters: Option<BTreeMap<String, String>>,
}

/// `[agents.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentFile {
    pub(super) pull: Option<bool>,
    pub(super) amqp_url: Option<String>,
    pub(super) amqp_queue: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub(super) node_id: Option<String>,
    pub(super) lease_ttl_ms: Option<u64>,
    pub(super) poll_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryFile {
    pub(super) max_concurrency: Option<usize>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) memory_events: Option<usize>,
    pub(super) memory_bytes: Option<usize>,
    pub(super) event_retention: Option<String>,
    pub(super) allowed_networks: Option<Vec<String>>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) ca_certificates: Option<PathBuf>,
    pub(super) client_certificate: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    pub(super) credentials_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    pub(super) default_expires: Option<String>,
    pub(super) min_expires: Option<String>,
    pub(super) max_expires: Option<String>,
    pub(super) accept_datetime: Option<bool>,
    pub(super) max_subscriptions: Option<u64>,
    pub(super) max_event_bytes: Option<usize>,
    pub(super) retry_initial: Option<String>,
    pub(super) retry_max: Option<String>,
    pub(super) retry_after_cap: Option<String>,
    pub(super) give_up_after: Option<String>,
    pub(super) resource_uris: Option<Vec<String>>,
}

/// `[contexts.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContextFile {
    pub(super) backend: Option<String>,
    pub(super) idle_ttl: Option<String>,
    pub(super) unknown_instance: Option<String>,
    pub(super) carrier: Option<String>,
    pub(super) max_callback_bytes: Option<usize>,
    pub(super) max_instances: Option<u64>,
    pub(super) retry_initial: Option<String>,
    pub(super) retry_max: Option<String>,
    pub(super) retry_after_cap: Option<String>,
    pub(super) give_up_after: Option<String>,
}
