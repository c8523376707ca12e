//! Wiring: builds the store, engine and router from a [`Config`], binds the listener, and runs
//! until a shutdown signal, then stops background tasks and closes the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::delivery::client::DeliveryClient;
use crate::delivery::policy::EndpointPolicy;
use crate::delivery::sink_auth::SinkSecurity;
use crate::engine::Engine;
use crate::eventing::notify::EventingEnvelopes;
use crate::filter::StandardFilters;
use crate::http::{self, AppShared, AppState};
use crate::invoke::bridge::AmqpBridges;
use crate::metrics::Metrics;
use crate::store::{KeptName, NodeId, PostgresStore, SqliteStore, Store, StoreError};
use crate::webhook::Messages;

/// Why herald could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    /// The delivery HTTP client could not be built.
    #[error("cannot build the delivery HTTP client")]
    Client(#[from] reqwest::Error),
    /// What sink authentication is configured with could not be loaded.
    #[error("cannot load what sink authentication is configured with")]
    SinkSecurity(#[from] crate::delivery::sink_auth::SecurityError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A herald ready to serve: store open, listener bound.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    client: DeliveryClient,
    config: Config,
    /// The name kept in the data directory, and its lock, held until herald stops.
    kept_name: Option<KeptName>,
}

impl Application {
    /// Opens the store, loads state and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Application, StartError> {
        // A node given no name keeps one in its data directory (see `KeptName`).
        let kept_name = match (&config.database, &config.node_id) {
            (Some(_), None) => Some(KeptName::open(&config.data_dir)?),
            _ => None,
        };
        let (store, node): (Arc<dyn Store>, NodeId) = match &config.database {
            Some(url) => (
                Arc::new(PostgresStore::open(url).await?),
                match &kept_name {
                    Some(kept) => kept.name().clone(),
                    None => config.node_id.clone().unwrap_or_else(NodeId::random),
                },
            ),
            None => (
                Arc::new(SqliteStore::open(&config.data_dir).await?),
                config
                    .node_id
                    .clone()
                    .or_else(|| NodeId::parse(NodeId::EMBEDDED))
                    .unwrap_or_else(NodeId::random),
            ),
        };
        let metrics = Arc::new(Metrics::default());
        let policy = Arc::new(
            EndpointPolicy::new(config.allowed_networks.clone())
                .with_hosts(config.allowed_hosts.clone()),
        );
        // The SQLite store's directory may hold a generated credentials key; PostgreSQL nodes
        // must be given theirs.
        let embedded_dir = config
            .database
            .is_none()
            .then_some(config.data_dir.as_path());
        let security = SinkSecurity::load(&config.sink_security, embedded_dir)?;
        let client = DeliveryClient::with_sink_security(policy.clone(), config.client, security)?;
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            node,
            client.clone(),
            (
                Arc::new(Messages {
                    soap: EventingEnvelopes,
                }),
                AmqpBridges::new(config.invocations.agents.iter().filter_map(|agent| {
                    let bridge = agent.bridge.clone()?;
                    Some((agent.name.clone(), bridge))
                })),
            ),
            config.delivery.clone(),
            config
                .sources
                .iter()
                .map(|source| (source.name.clone(), source.retry))
                .collect(),
            config.clock,
            metrics.clone(),
        ));
        let engine = Engine::new(
            store.clone(),
            (
                config.sources.clone(),
                config.contexts.clone(),
                config.invocations.clone(),
                config.channels.clone(),
            ),
            dispatcher.clone(),
            Arc::new(StandardFilters::new(Arc::new(EventingEnvelopes))),
            policy,
            config.clock,
        );
        engine.start().await?;
        match engine.recover_invocations().await {
            Ok(0) => {}
            Ok(resumed) => {
                tracing::warn!(
                    resumed,
                    "invocations in flight at the last stop are called again"
                )
            }
            Err(err) => tracing::error!(error = %err, "recovering invocations failed"),
        }
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen.clone(),
                    source,
                })?;
        let resources = Arc::new(crate::eventing::wsman::ResourceTable::from_sources(
            engine.sources(),
        ));
        let state = AppState::new(AppShared {
            resources,
            engine,
            metrics,
            public_url: config.public_url.as_deref().map(Arc::from),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.connections.body_timeout,
            limits: config.limits,
            api_token: config.api_token.as_deref().map(Arc::from),
            gateway: crate::context::gateway::Gateway::new(config.client)?,
        });
        Ok(Application {
            listener,
            state,
            store,
            dispatcher,
            client,
            config,
            kept_name,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The name this node goes by in the store.
    pub fn node(&self) -> &NodeId {
        self.dispatcher.node()
    }

    /// The engine, for callers that embed herald.
    pub fn engine(&self) -> Arc<Engine> {
        self.state.engine.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish, stops delivery
    /// (sends in flight get a grace period), flushes delivery progress, stops the sweeper and
    /// closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(
            self.state
                .engine
                .clone()
                .run_sweeper(self.config.sweep_interval, stop.clone()),
        );
        let firing = tokio::spawn(self.state.engine.clone().run_channel_callbacks(
            self.config.sweep_interval,
            self.state.metrics.clone(),
            stop.clone(),
        ));
        let runners = tokio_util::task::TaskTracker::new();
        for invoker in self.state.engine.invokers() {
            runners.spawn(crate::invoke::runner::run(
                self.state.engine.clone(),
                invoker.clone(),
                self.client.clone(),
                self.state.metrics.clone(),
                stop.clone(),
            ));
        }
        runners.close();
        let refused = self.state.metrics.connections_refused.clone();
        // Waiting requests (Pulls) answer as soon as stopping begins, so the drain is short.
        let engine = self.state.engine.clone();
        let shutdown = async move {
            shutdown.await;
            engine.drain();
        };
        let router = http::router(self.state);
        let served = http::server::serve(
            self.listener,
            router,
            self.config.connections,
            refused,
            shutdown,
        )
        .await;
        stop.cancel();
        if let Err(err) = sweeper.await {
            tracing::warn!(error = %err, "expiry sweeper ended abnormally");
        }
        runners.wait().await;
        if let Err(err) = firing.await {
            tracing::warn!(error = %err, "channel callbacks ended abnormally");
        }
        self.dispatcher
            .stop(self.config.client.request_timeout + std::time::Duration::from_secs(1))
            .await;
        // Progress is written: other nodes may take this node's subscriptions over at once.
        self.dispatcher.release().await;
        self.store.close().await;
        drop(self.kept_name);
        served
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops herald");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
