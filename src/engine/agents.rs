//! Agents: named durable queues, each a log. Pull listeners lease its queue entries (competing
//! listeners never hold one message at once; an unacknowledged message comes back when its
//! lease runs out); a declared agent is also an event source SOAP subscribers subscribe to; and
//! an agent with an AMQP bridge has one more reader, which publishes to the broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::invocations::AgentPolicy;
use super::{Engine, EngineError};
use crate::domain::expiry::ExpiryKind;
use crate::domain::invocation::{Leased, QueueDepth};
use crate::domain::subscription::{
    EndpointRef, EventingVersion, LogKind, NotificationFormat, ReaderDelivery, SoapVersion,
    SourceName, Subscription, SubscriptionId, SubscriptionStatus, WireDialect, WsaVersion,
};

/// How many times a bridge can be removed from config and put back.
const BRIDGE_GENERATIONS: u32 = 64;

impl Engine {
    /// What wakes pull listeners of `agent` waiting on this node (a message was appended here;
    /// other nodes' appends are found by polling).
    pub fn agent_wake(&self, agent: &SourceName) -> Arc<tokio::sync::Notify> {
        let mut wakes = self.agent_wakes.lock().unwrap_or_else(|e| e.into_inner());
        wakes.entry(agent.clone()).or_default().clone()
    }

    /// The policy of an agent: as declared, or (created on first use) pull only.
    pub fn agent(&self, name: &SourceName) -> AgentPolicy {
        self.agents
            .get(name)
            .cloned()
            .unwrap_or_else(|| AgentPolicy {
                name: name.clone(),
                pull: true,
                bridge: None,
            })
    }

    /// The declared agents.
    pub fn agents(&self) -> impl Iterator<Item = &AgentPolicy> {
        self.agents.values()
    }

    /// Leases up to `limit` messages of an agent to a pull listener for `visibility` (the
    /// configured default when `None`), only those with `correlation_id` when given.
    pub async fn receive(
        &self,
        agent: &str,
        limit: u32,
        correlation_id: Option<&str>,
        visibility: Option<Duration>,
    ) -> Result<Vec<Leased>, EngineError> {
        let agent = self.agent_name(agent)?;
        let visibility = visibility.unwrap_or(self.invocation_policy.visibility_timeout);
        Ok(self
            .store
            .receive(&agent, limit, correlation_id, visibility)
            .await?)
    }

    /// Acknowledges (`delay` `None`) or puts back after `delay` a leased message. False when
    /// the receipt no longer holds it.
    pub async fn settle(
        &self,
        agent: &str,
        receipt: &str,
        delay: Option<Duration>,
    ) -> Result<bool, EngineError> {
        let agent = self.agent_name(agent)?;
        Ok(self.store.settle(&agent, receipt, delay).await?)
    }

    /// Queue depths of every agent with pull listeners.
    pub async fn queue_depths(&self) -> Result<BTreeMap<SourceName, QueueDepth>, EngineError> {
        Ok(self.store.queue_depths().await?.into_iter().collect())
    }

    fn agent_name(&self, agent: &str) -> Result<SourceName, EngineError> {
        SourceName::parse(agent)
            .ok_or_else(|| EngineError::UnknownAgent(agent.chars().take(64).collect()))
    }

    /// Whether `id` names one of the bridge readers herald makes for its agents (which no
    /// subscriber may renew or end).
    pub(super) fn is_bridge_reader(&self, id: SubscriptionId) -> bool {
        self.agents
            .values()
            .any(|agent| self.bridge_generation(agent, id).is_some())
    }

    /// Which generation of `agent`'s bridge reader, to its configured queue, `id` is.
    pub(super) fn bridge_generation(&self, agent: &AgentPolicy, id: SubscriptionId) -> Option<u32> {
        (0..BRIDGE_GENERATIONS).find(|&generation| {
            self.bridge_reader(agent, generation)
                .is_some_and(|reader| reader.id == id)
        })
    }

    /// The bridge reader of a declared agent, generation `generation`: its id is derived from
    /// the agent's name and queue, so every node names the same one.
    fn bridge_reader(&self, agent: &AgentPolicy, generation: u32) -> Option<Subscription> {
        let bridge = agent.bridge.as_ref()?;
        let address = match url::Url::parse(&bridge.url) {
            Ok(mut url) => {
                let _ = url.set_password(None);
                let _ = url.set_username("");
                url.to_string()
            }
            Err(_) => "amqp:".into(),
        };
        Some(Subscription {
            id: SubscriptionId::derived(&format!(
                "herald:bridge:{}:{}:{generation}",
                agent.name, bridge.queue
            )),
            source: agent.name.clone(),
            log: LogKind::Agent,
            delivery: ReaderDelivery::AmqpPublish,
            dialect: WireDialect {
                eventing: EventingVersion::W3c2011,
                soap: SoapVersion::Soap12,
                addressing: WsaVersion::W3c2005,
            },
            notify_to: EndpointRef {
                address: format!("{address}#{}", bridge.queue),
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            },
            end_to: None,
            delivery_mode: String::new(),
            format: NotificationFormat::Unwrap,
            filter: None,
            expires_at: None,
            expiry_kind: ExpiryKind::Duration,
            created_at: self.clock.now(),
            manager_address: String::new(),
            webhook: None,
            connection_retry: None,
            wsman: None,
        })
    }

    /// Stores the bridge reader of every declared agent with a bridge that has none active
    /// (its cursor at the agent's head: it publishes what is appended from now on) and starts
    /// delivering it. At start, after delivery has adopted what it owns.
    pub async fn ensure_bridges(&self) -> Result<(), EngineError> {
        for agent in self.agents.values() {
            // A bridge removed from config ends its reader; put back, a new one starts where
            // the last one stopped (its cursor), so nothing appended meanwhile is skipped.
            let mut found = None;
            let mut resume_at = None;
            for generation in 0..BRIDGE_GENERATIONS {
                let Some(reader) = self.bridge_reader(agent, generation) else {
                    break;
                };
                match self.store.subscription_record(reader.id).await? {
                    Some(record) if record.status == SubscriptionStatus::Active => break,
                    Some(record) => resume_at = Some(record.progress.cursor),
                    None => {
                        found = Some(reader);
                        break;
                    }
                }
            }
            let Some(reader) = found else {
                continue;
            };
            let cursor = match self
                .store
                .insert_subscription(&reader, self.delivery.node(), None)
                .await
            {
                Ok(cursor) => cursor,
                Err(err) => {
                    // Another node stored it first: it is delivered from there.
                    tracing::debug!(agent = %agent.name, error = %err, "bridge reader not stored here");
                    continue;
                }
            };
            let mut progress = crate::domain::subscription::DeliveryProgress {
                cursor,
                ..Default::default()
            };
            if let Some(cursor) = resume_at.filter(|at| *at < progress.cursor) {
                progress.cursor = cursor;
                let node = self.delivery.node();
                self.store
                    .save_progress(node, &[(reader.id, progress.clone())])
                    .await?;
            }
            let retry = self.bridge_retry(&agent.name);
            self.delivery
                .start_reading(reader, progress, None, retry)
                .await;
        }
        Ok(())
    }

    /// Per bridged agent this node delivers: messages appended and not yet confirmed by the
    /// broker.
    pub fn bridge_lags(&self) -> Vec<(SourceName, u64)> {
        let mut lags = Vec::new();
        for agent in self.agents.values() {
            for generation in 0..BRIDGE_GENERATIONS {
                let Some(reader) = self.bridge_reader(agent, generation) else {
                    break;
                };
                if let Some(progress) = self.delivery.progress(&agent.name, reader.id) {
                    let head = self.delivery.head(&agent.name).unwrap_or(0);
                    lags.push((agent.name.clone(), head.saturating_sub(progress.cursor)));
                    break;
                }
            }
        }
        lags
    }

    /// A bridge is retried for as long as it takes: a broker that is down holds messages
    /// back, it does not lose them.
    pub(super) fn bridge_retry(&self, agent: &SourceName) -> crate::delivery::retry::RetryPolicy {
        let base = self
            .sources
            .get(agent)
            .map(|policy| policy.retry)
            .unwrap_or_default();
        crate::delivery::retry::RetryPolicy {
            give_up_after: Duration::from_secs(100 * 365 * 24 * 3600),
            ..base
        }
    }
}
