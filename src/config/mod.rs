//! Configuration: built-in defaults (`config/default.toml`, compiled in), then the user's TOML
//! file, then `HERALD_*` environment variables, then flags.

mod args;
mod channels;
mod contexts;
mod invocations;
mod sink;
mod sources;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::delivery::DeliverySettings;
use crate::delivery::client::ClientSettings;
use crate::delivery::policy::{HostPattern, Network};
use crate::delivery::sink_auth::SinkSecuritySettings;
use crate::domain::clock::Clock;
use crate::engine::{ChannelPolicy, ContextPolicy, InvocationPolicy, SourcePolicy};
use crate::http::server::ConnectionLimits;
use crate::soap::envelope::Limits;
use crate::store::NodeId;
use args::FileConfig;
pub use args::ServeArgs;
use sources::{source_policy, std_duration};

/// The documented defaults file.
pub const DEFAULTS_TOML: &str = include_str!("../../config/default.toml");

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for herald.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// How herald writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object a line, its fields as members, for log collectors.
    Json,
}

/// The resolved configuration herald runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Public base URL, if configured.
    pub public_url: Option<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Log level name.
    pub log_level: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Expiry sweeper interval.
    pub sweep_interval: Duration,
    /// Parser limits for SOAP messages.
    pub limits: Limits,
    /// Connections open at once and how long a client may take.
    pub connections: ConnectionLimits,
    /// Event sources.
    pub sources: Vec<SourcePolicy>,
    /// Callback context services (none unless configured).
    pub contexts: Vec<ContextPolicy>,
    /// Invokers and agents (none unless configured).
    pub invocations: InvocationPolicy,
    /// Push channels.
    pub channels: ChannelPolicy,
    /// Bearer token for publishing and the JSON API.
    pub api_token: Option<String>,
    /// PostgreSQL URL; `None` for the embedded store in `data_dir`.
    pub database: Option<String>,
    /// This node's name; `None` for the store's default.
    pub node_id: Option<NodeId>,
    /// Delivery tuning.
    pub delivery: DeliverySettings,
    /// Delivery client timeouts.
    pub client: ClientSettings,
    /// Networks subscribers may be in despite being internal.
    pub allowed_networks: Vec<Network>,
    /// Names accepted at Subscribe although they do not resolve.
    pub allowed_hosts: Vec<HostPattern>,
    /// Authenticating to sinks: extra trusted CAs, herald's client certificate, the
    /// credentials key.
    pub sink_security: SinkSecuritySettings,
    /// Where "now" comes from (tests use tokio's pausable clock).
    pub clock: Clock,
}

fn parse_toml(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|err| ConfigError::Parse {
        path: path.to_owned(),
        message: err.to_string(),
    })
}

impl Config {
    /// The built-in defaults alone: what a fresh `herald serve` runs with.
    pub fn defaults() -> Config {
        Config::resolve(&ServeArgs::default(), None)
            .unwrap_or_else(|err| panic!("the built-in defaults file is invalid: {err}"))
    }

    /// Resolves the configuration for `herald serve`: defaults, the file named by `--config` /
    /// `HERALD_CONFIG`, then the environment and flags (already merged by clap, flags first).
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        Config::resolve(args, file)
    }

    fn resolve(args: &ServeArgs, file: Option<FileConfig>) -> Result<Config, ConfigError> {
        let defaults = parse_toml(DEFAULTS_TOML, "built-in defaults")?;
        let file = file.unwrap_or_default();
        let pick = |flag: Option<String>, file: Option<String>, default: Option<String>| {
            flag.or(file).or(default)
        };
        let listen = pick(args.listen.clone(), file.listen, defaults.listen)
            .ok_or_else(|| ConfigError::Invalid("listen is required".into()))?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .or(defaults.data_dir)
            .ok_or_else(|| ConfigError::Invalid("data_dir is required".into()))?;
        let public_url = pick(
            args.public_url.clone(),
            file.public_url,
            defaults.public_url,
        );
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "public_url must be an absolute http(s) URL, not '{url}'"
            )));
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .or(defaults.max_body_bytes)
            .unwrap_or(1 << 20);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        let log_level = pick(args.log_level.clone(), file.log_level, defaults.log_level)
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "unknown log_level '{log_level}'"
            )));
        }
        let log_format = match pick(
            args.log_format.clone(),
            file.log_format,
            defaults.log_format,
        )
        .as_deref()
        .map(str::trim)
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "unknown log_format '{other}' (text or json)"
                )));
            }
        };
        let sweep_ms = args
            .sweep_interval_ms
            .or(file.sweep_interval_ms)
            .or(defaults.sweep_interval_ms)
            .unwrap_or(250);
        if !(10..=1000).contains(&sweep_ms) {
            return Err(ConfigError::Invalid(
                "sweep_interval_ms must be between 10 and 1000".into(),
            ));
        }
        let max_connections = file
            .max_connections
            .or(defaults.max_connections)
            .unwrap_or(512);
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(ConfigError::Invalid(
                "max_connections must be 1-1000000".into(),
            ));
        }
        let seconds = |value: Option<u64>, default: Option<u64>, name: &str| {
            let ms = value.or(default).unwrap_or(10_000);
            if (100..=3_600_000).contains(&ms) {
                Ok(Duration::from_millis(ms))
            } else {
                Err(ConfigError::Invalid(format!("{name} must be 100-3600000")))
            }
        };
        let connections = ConnectionLimits {
            max_connections,
            header_timeout: seconds(
                file.header_timeout_ms,
                defaults.header_timeout_ms,
                "header_timeout_ms",
            )?,
            body_timeout: seconds(
                file.body_timeout_ms,
                defaults.body_timeout_ms,
                "body_timeout_ms",
            )?,
        };
        let api_token = args
            .api_token
            .clone()
            .or(file.api_token)
            .or(defaults.api_token);
        if api_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::Invalid("api_token must not be empty".into()));
        }
        let database = args
            .database
            .clone()
            .or(file.database)
            .or(defaults.database)
            .filter(|url| !url.trim().is_empty());
        if let Some(url) = &database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "database must be a postgres:// URL".into(),
            ));
        }
        let base_cluster = defaults.cluster.unwrap_or_default();
        let cluster_file = file.cluster.unwrap_or_default();
        let node_id = args
            .node_id
            .clone()
            .or(cluster_file.node_id)
            .or(base_cluster.node_id)
            .map(|name| {
                NodeId::parse(name.trim()).ok_or_else(|| {
                    ConfigError::Invalid(
                        "cluster.node_id must be 1-64 characters from A-Z a-z 0-9 . _ -".into(),
                    )
                })
            })
            .transpose()?;
        let lease_ttl_ms = args
            .lease_ttl_ms
            .or(cluster_file.lease_ttl_ms)
            .or(base_cluster.lease_ttl_ms)
            .unwrap_or(10_000);
        if !(400..=600_000).contains(&lease_ttl_ms) {
            return Err(ConfigError::Invalid(
                "cluster.lease_ttl_ms must be 400-600000".into(),
            ));
        }
        let poll_interval_ms = cluster_file
            .poll_interval_ms
            .or(base_cluster.poll_interval_ms)
            .unwrap_or(1000);
        if !(10..=60_000).contains(&poll_interval_ms) {
            return Err(ConfigError::Invalid(
                "cluster.poll_interval_ms must be 10-60000".into(),
            ));
        }
        let base_delivery = defaults.delivery.unwrap_or_default();
        let delivery_file = file.delivery.unwrap_or_default();
        let sink_security = sink::sink_security(args, &delivery_file, &base_delivery)?;
        let max_concurrency = delivery_file
            .max_concurrency
            .or(base_delivery.max_concurrency)
            .unwrap_or(256);
        if !(1..=100_000).contains(&max_concurrency) {
            return Err(ConfigError::Invalid(
                "delivery.max_concurrency must be 1-100000".into(),
            ));
        }
        let millis =
            |value: Option<u64>, base: Option<u64>, name: &str| -> Result<Duration, ConfigError> {
                let ms = value.or(base).unwrap_or(5000);
                if !(1..=3_600_000).contains(&ms) {
                    return Err(ConfigError::Invalid(format!(
                        "delivery.{name} must be 1-3600000"
                    )));
                }
                Ok(Duration::from_millis(ms))
            };
        let client = ClientSettings {
            connect_timeout: millis(
                delivery_file.connect_timeout_ms,
                base_delivery.connect_timeout_ms,
                "connect_timeout_ms",
            )?,
            request_timeout: millis(
                delivery_file.request_timeout_ms,
                base_delivery.request_timeout_ms,
                "request_timeout_ms",
            )?,
        };
        let memory_events = delivery_file
            .memory_events
            .or(base_delivery.memory_events)
            .unwrap_or(4096);
        if !(16..=10_000_000).contains(&memory_events) {
            return Err(ConfigError::Invalid(
                "delivery.memory_events must be 16-10000000".into(),
            ));
        }
        let retention = delivery_file
            .event_retention
            .or(base_delivery.event_retention)
            .unwrap_or_else(|| "PT1H".into());
        let retention =
            std_duration("delivery.event_retention", &retention).map_err(ConfigError::Invalid)?;
        let networks = args
            .allowed_networks
            .clone()
            .or(delivery_file.allowed_networks)
            .or(base_delivery.allowed_networks)
            .unwrap_or_default();
        let allowed_networks = networks
            .iter()
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                n.parse::<Network>()
                    .map_err(|e| ConfigError::Invalid(format!("allowed_networks: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_hosts = args
            .allowed_hosts
            .clone()
            .or(delivery_file.allowed_hosts)
            .or(base_delivery.allowed_hosts)
            .unwrap_or_default()
            .iter()
            .filter(|name| !name.trim().is_empty())
            .map(|name| {
                name.parse::<HostPattern>()
                    .map_err(|e| ConfigError::Invalid(format!("allowed_hosts: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let memory_bytes = delivery_file
            .memory_bytes
            .or(base_delivery.memory_bytes)
            .unwrap_or(64 * 1024 * 1024);
        if !(1024 * 1024..=1 << 40).contains(&memory_bytes) {
            return Err(ConfigError::Invalid(
                "delivery.memory_bytes must be at least 1048576".into(),
            ));
        }
        let delivery = DeliverySettings {
            max_concurrency,
            memory_events,
            memory_bytes,
            retention,
            end_notice_claim: client.request_timeout * 2 + Duration::from_secs(5),
            lease_ttl: Duration::from_millis(lease_ttl_ms),
            poll_interval: Duration::from_millis(poll_interval_ms),
            ..DeliverySettings::default()
        };
        let default_sources = defaults.sources.unwrap_or_default();
        let base = default_sources.get("default").cloned().unwrap_or_default();
        let sources = file.sources.unwrap_or(default_sources);
        if sources.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one source must be configured".into(),
            ));
        }
        let sources = sources
            .into_iter()
            .map(|(name, source)| source_policy(&name, source, &base))
            .collect::<Result<Vec<_>, _>>()?;
        let contexts = file
            .contexts
            .unwrap_or_default()
            .into_iter()
            .map(|(name, context)| contexts::context_policy(&name, context, &base))
            .collect::<Result<Vec<_>, _>>()?;
        let invocations = invocations::invocation_policy(
            file.invocations,
            file.invokers.unwrap_or_default(),
            file.agents.unwrap_or_default(),
            &base,
        )?;
        let default_retry = source_policy("default", base.clone(), &base)?.retry;
        let channels = channels::channel_policy(file.channels, default_retry)?;
        // A declared agent is also an event source: SOAP subscribers subscribe to it.
        let mut sources = sources;
        for agent in &invocations.agents {
            if sources.iter().any(|source| source.name == agent.name) {
                return Err(ConfigError::Invalid(format!(
                    "agent '{}' has the name of a source",
                    agent.name
                )));
            }
            let mut source = source_policy(agent.name.as_str(), base.clone(), &base)?;
            // Resource URIs name one source each: an agent does not inherit the default's.
            source.resource_uris.clear();
            sources.push(source);
        }
        let mut declared = std::collections::BTreeMap::new();
        for source in &sources {
            for uri in &source.resource_uris {
                if let Some(other) = declared.insert(uri.as_str(), &source.name) {
                    return Err(ConfigError::Invalid(format!(
                        "resource URI '{uri}' is declared by sources '{other}' and '{}'",
                        source.name
                    )));
                }
            }
        }
        Ok(Config {
            listen,
            data_dir,
            public_url,
            max_body_bytes,
            log_level,
            log_format,
            sweep_interval: Duration::from_millis(sweep_ms),
            limits: Limits::default(),
            connections,
            sources,
            contexts,
            invocations,
            channels,
            api_token,
            database,
            node_id,
            delivery,
            client,
            allowed_networks,
            allowed_hosts,
            sink_security,
            clock: Clock::System,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_toml(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests;
