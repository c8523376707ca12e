//! Push channels (seed 004): the rules. A channel is opened by a client app and read by its
//! device; services send it notifications, which are refused once it is closed or expired (404),
//! while the device is inactive (412), beyond the daily limit of unauthenticated senders (406),
//! and not queued while the channel's queue is full.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::sync::Notify;

use super::{Engine, EngineError};
use crate::domain::channel::{Channel, ChannelToken, ConnectionStatus, Presence};
use crate::domain::event::{Event, NewEvent};

/// `[channels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPolicy {
    /// A channel expires this long after it was opened or last renewed.
    pub ttl: Duration,
    /// When a device counts as connected, temporarily disconnected, inactive.
    pub presence: Presence,
    /// The largest notification body, in bytes.
    pub max_notification_bytes: usize,
    /// Notifications queued and not yet read beyond which new ones are not queued.
    pub queue_cap: u64,
    /// Notifications per channel per day from unauthenticated senders.
    pub daily_limit: u64,
    /// How a callback's firing is retried, and when it is given up.
    pub callback_retry: crate::delivery::retry::RetryPolicy,
    /// A channel closed or expired this long ago is forgotten, with its notifications.
    pub keep_ended: Duration,
}

impl Default for ChannelPolicy {
    fn default() -> ChannelPolicy {
        ChannelPolicy {
            ttl: Duration::from_secs(30 * 24 * 3600),
            presence: Presence {
                connected_for: Duration::from_secs(60),
                grace: Duration::from_secs(300),
            },
            max_notification_bytes: 8 * 1024,
            queue_cap: 1000,
            daily_limit: 500,
            callback_retry: crate::delivery::retry::RetryPolicy::default(),
            keep_ended: Duration::from_secs(24 * 3600),
        }
    }
}

/// `X-NotificationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Queued for the device.
    Received,
    /// Not queued: the channel's queue is full; send again later.
    QueueFull,
    /// Not queued: refused (see the status code).
    Dropped,
}

impl NotificationStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Received => "Received",
            NotificationStatus::QueueFull => "QueueFull",
            NotificationStatus::Dropped => "Dropped",
        }
    }
}

/// What became of a notification, as the channel's answer says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The HTTP status.
    pub code: u16,
    /// `X-NotificationStatus`.
    pub notification: NotificationStatus,
    /// `X-DeviceConnectionStatus`.
    pub device: ConnectionStatus,
    /// `X-SubscriptionStatus`: `Active` or `Expired`.
    pub active: bool,
    /// The notification's position in the channel, when queued.
    pub seq: Option<u64>,
}

impl Engine {
    /// The channels' configuration.
    pub fn channel_policy(&self) -> &ChannelPolicy {
        &self.channel_policy
    }

    /// What wakes the device readers of a channel waiting on this node.
    pub fn channel_wake(&self, token: &ChannelToken) -> Arc<Notify> {
        let mut guard = self.channel_wakes.lock().unwrap_or_else(|e| e.into_inner());
        let (wakes, sweep_at) = &mut *guard;
        // Readers come and go: forget the wakes nobody holds any more, whenever the map has
        // doubled since the last sweep (so a sweep's cost is spread over as many calls).
        if wakes.len() >= (*sweep_at).max(1024) {
            wakes.retain(|_, wake| Arc::strong_count(wake) > 1);
            *sweep_at = wakes.len() * 2;
        }
        wakes.entry(token.clone()).or_default().clone()
    }

    /// Opens a channel; durable when this returns.
    pub async fn open_channel(&self) -> Result<Channel, EngineError> {
        let now = self.clock.now();
        let ttl = SignedDuration::try_from(self.channel_policy.ttl).unwrap_or(SignedDuration::MAX);
        let channel = Channel::opened(now, now.checked_add(ttl).unwrap_or(jiff::Timestamp::MAX));
        self.store.open_channel(&channel).await?;
        Ok(channel)
    }

    /// A channel, open or not.
    pub async fn channel(&self, token: &str) -> Result<Channel, EngineError> {
        let token = ChannelToken::parse(token).ok_or(EngineError::UnknownChannel)?;
        self.store
            .channel(&token, self.clock.now())
            .await?
            .ok_or(EngineError::UnknownChannel)
    }

    /// Closes a channel (its client's order); false when it was not open.
    pub async fn close_channel(&self, token: &str) -> Result<bool, EngineError> {
        let token = ChannelToken::parse(token).ok_or(EngineError::UnknownChannel)?;
        let closed = self.store.close_channel(&token, self.clock.now()).await?;
        self.channel_wake(&token).notify_waiters();
        Ok(closed)
    }

    /// Renews an open channel for another time-to-live; its new expiry.
    pub async fn renew_channel(&self, token: &str) -> Result<jiff::Timestamp, EngineError> {
        let token = ChannelToken::parse(token).ok_or(EngineError::UnknownChannel)?;
        let now = self.clock.now();
        let ttl = SignedDuration::try_from(self.channel_policy.ttl).unwrap_or(SignedDuration::MAX);
        let expires_at = now.checked_add(ttl).unwrap_or(jiff::Timestamp::MAX);
        if self.store.renew_channel(&token, expires_at, now).await? {
            Ok(expires_at)
        } else {
            Err(EngineError::UnknownChannel)
        }
    }

    /// Sends a notification to a channel.
    pub async fn notify_channel(
        &self,
        token: &str,
        content_type: &str,
        body: String,
        authenticated: bool,
    ) -> Result<Sent, EngineError> {
        let dropped = |code, device, active| Sent {
            code,
            notification: NotificationStatus::Dropped,
            device,
            active,
            seq: None,
        };
        let channel = match self.channel(token).await {
            Ok(channel) if channel.is_open() => channel,
            Ok(_) | Err(EngineError::UnknownChannel) => {
                return Ok(dropped(404, ConnectionStatus::Disconnected, false));
            }
            Err(err) => return Err(err),
        };
        let device = channel.status(&self.channel_policy.presence);
        if device == ConnectionStatus::InActive {
            return Ok(dropped(412, device, true));
        }
        if body.len() > self.channel_policy.max_notification_bytes {
            return Ok(dropped(413, device, true));
        }
        // A full queue takes nothing, so it counts nothing against the daily limit.
        if channel.queued() >= self.channel_policy.queue_cap {
            return Ok(Sent {
                code: 200,
                notification: NotificationStatus::QueueFull,
                device,
                active: true,
                seq: None,
            });
        }
        if !authenticated {
            let limit = self.channel_policy.daily_limit;
            if !self
                .store
                .count_unauthenticated(&channel.token, channel.day(), limit)
                .await?
            {
                return Ok(dropped(406, device, true));
            }
        }
        let event = NewEvent {
            action: content_type.to_owned(),
            payload: body,
        };
        let appended = self
            .delivery
            .append(&channel.token.log(), vec![event])
            .await?;
        self.channel_wake(&channel.token).notify_waiters();
        Ok(Sent {
            code: 200,
            notification: NotificationStatus::Received,
            device,
            active: true,
            seq: appended.first().map(|event| event.seq),
        })
    }

    /// A device reads: up to `limit` notifications after `after` (after its cursor when
    /// `None`); the device counts as there now, and as having read up to `after`.
    pub async fn read_channel(
        &self,
        token: &ChannelToken,
        after: Option<u64>,
        limit: u32,
    ) -> Result<(Channel, Vec<Event>), EngineError> {
        let now = self.clock.now();
        let channel = self
            .store
            .channel(token, now)
            .await?
            .filter(Channel::is_open)
            .ok_or(EngineError::UnknownChannel)?;
        // A position past the head (a stale id, another channel's) reads from the head: it
        // cannot make later notifications count as read.
        let after = after.map(|after| after.min(channel.head));
        if !self.store.see_channel(token, now, after, after).await? {
            return Err(EngineError::UnknownChannel);
        }
        let from = after.unwrap_or(channel.cursor);
        let events = if from < channel.head {
            self.store.events_after(&token.log(), from, limit).await?
        } else {
            Vec::new()
        };
        Ok((channel, events))
    }

    /// A stream is still there, having sent up to `sent` (which the device has not confirmed:
    /// it is not what compaction keeps from). False when the channel is no longer open.
    pub async fn stream_seen(&self, token: &ChannelToken, sent: u64) -> Result<bool, EngineError> {
        let now = self.clock.now();
        Ok(self.store.see_channel(token, now, None, Some(sent)).await?)
    }

    /// Up to `limit` notifications of a channel after `after`, read without counting as a
    /// reader's visit (a stream's polling between its visits).
    pub async fn channel_events(
        &self,
        token: &ChannelToken,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, EngineError> {
        Ok(self.store.events_after(&token.log(), after, limit).await?)
    }

    /// Channels by connection status now: Connected, TempDisconnected, InActive,
    /// Disconnected.
    pub async fn channel_counts(&self) -> Result<[(ConnectionStatus, u64); 4], EngineError> {
        let presence = self.channel_policy.presence;
        let [connected, temp, inactive, gone] = self
            .store
            .channel_counts(
                presence.connected_for,
                presence.connected_for + presence.grace,
                self.clock.now(),
            )
            .await?;
        Ok([
            (ConnectionStatus::Connected, connected),
            (ConnectionStatus::TempDisconnected, temp),
            (ConnectionStatus::InActive, inactive),
            (ConnectionStatus::Disconnected, gone),
        ])
    }

    /// Open channels' connection statuses are computed from when a reader was last there;
    /// this is the status of one when it was read.
    pub fn channel_status(&self, channel: &Channel) -> ConnectionStatus {
        channel.status(&self.channel_policy.presence)
    }
}

/// Channel wakes by token, and the size at which they are swept next.
pub(super) type ChannelWakes = std::sync::Mutex<(BTreeMap<ChannelToken, Arc<Notify>>, usize)>;
