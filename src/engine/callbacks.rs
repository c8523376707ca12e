//! Channel callbacks (seed 004), and the forgetting of ended channels: one registration per channel, the last one winning, fired
//! when the device goes inactive — its payload POSTed byte for byte with its content type,
//! retried with back-off (`Retry-After` honoured) until delivered or given up — once per
//! registration. The transition to firing is stored before anything is sent, so a channel that
//! went inactive while herald was down fires when herald is back; a crash between a send and
//! its record sends it again.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError};
use crate::delivery::client::Attempt;
use crate::domain::channel::{
    CallbackRegistration, ConnectionStatus, Firing, FiringOutcome, MAX_CALLBACK_BYTES,
};
use crate::metrics::{CallbackFiredLabels, Metrics};

/// Firings sent at once per pass.
const BATCH: u32 = 64;
/// How much longer than the longest send (the delivery client's request timeout) a node that
/// took a firing keeps the others off it: time to record the outcome.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No open channel has this token.
    UnknownChannel,
    /// The device is inactive: register after it is back.
    Inactive,
    /// A bad registration (the reason).
    Bad(String),
}

impl Engine {
    /// Stores a callback registration for a channel (the last one wins), durably. `uri` must be
    /// an absolute http(s) URL that passes the endpoint policy; `payload` at most 1,024 bytes.
    /// Returns the device's status.
    pub async fn register_callback(
        &self,
        token: &str,
        uri: Option<&str>,
        payload: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<Result<ConnectionStatus, Refusal>, EngineError> {
        let channel = match self.channel(token).await {
            Ok(channel) if channel.is_open() => channel,
            Ok(_) | Err(EngineError::UnknownChannel) => return Ok(Err(Refusal::UnknownChannel)),
            Err(err) => return Err(err),
        };
        let status = self.channel_status(&channel);
        if payload.len() > MAX_CALLBACK_BYTES {
            return Ok(Err(Refusal::Bad(format!(
                "the callback payload is larger than {MAX_CALLBACK_BYTES} bytes"
            ))));
        }
        let Some(uri) = uri.map(str::trim).filter(|uri| !uri.is_empty()) else {
            return Ok(Err(Refusal::Bad("X-CallbackURI is required".into())));
        };
        let absolute = url::Url::parse(uri)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
        if absolute.is_none() {
            return Ok(Err(Refusal::Bad(
                "X-CallbackURI must be an absolute http(s) URL".into(),
            )));
        }
        if let Err(err) = self.endpoints.check_url(uri).await {
            return Ok(Err(Refusal::Bad(format!(
                "X-CallbackURI is refused: {err}"
            ))));
        }
        if status == ConnectionStatus::InActive {
            return Ok(Err(Refusal::Inactive));
        }
        let registration = CallbackRegistration {
            uri: uri.to_owned(),
            payload,
            content_type,
            registered_at: self.clock.now(),
        };
        let now = self.clock.now();
        if !self
            .store
            .register_callback(&channel.token, &registration, now)
            .await?
        {
            return Ok(Err(Refusal::UnknownChannel));
        }
        Ok(Ok(status))
    }

    /// Fires registrations until `stop`: every `interval`, the armed registrations of channels
    /// whose device went inactive start firing, and the firings due are sent.
    pub async fn run_channel_callbacks(
        self: Arc<Self>,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(err) = self.fire_callbacks(&metrics).await {
                tracing::warn!(error = %err, "firing channel callbacks failed; retrying");
            }
        }
    }

    async fn fire_callbacks(self: &Arc<Self>, metrics: &Arc<Metrics>) -> Result<(), EngineError> {
        let now = self.clock.now();
        let presence = self.channel_policy.presence;
        let inactive_after = presence.connected_for + presence.grace;
        let started = self.store.start_firings(inactive_after, now, 1000).await?;
        if started > 0 {
            tracing::debug!(started, "devices went inactive: their callbacks fire");
        }
        // Channels ended long enough ago go, with their notifications (a firing of a closed
        // or expired channel is not sent).
        let keep =
            SignedDuration::try_from(self.channel_policy.keep_ended).unwrap_or(SignedDuration::MAX);
        let ended_before = now.checked_sub(keep).unwrap_or(now);
        let forgotten = self.store.forget_channels(ended_before, 1000).await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "ended channels forgotten");
        }
        let claim = self.delivery.client_settings().request_timeout + CLAIM_MARGIN;
        let due = self.store.due_firings(now, BATCH, claim).await?;
        let mut sends = tokio::task::JoinSet::new();
        for firing in due {
            let (engine, metrics) = (self.clone(), metrics.clone());
            sends.spawn(async move { engine.fire(firing, &metrics).await });
        }
        while let Some(sent) = sends.join_next().await {
            if let Ok(Err(err)) = sent {
                tracing::warn!(error = %err, "recording a channel callback failed");
            }
        }
        Ok(())
    }

    async fn fire(&self, firing: Firing, metrics: &Metrics) -> Result<(), EngineError> {
        let registration = &firing.registration;
        let headers = [
            ("X-Herald-Channel", firing.token.to_string()),
            ("X-Herald-Event", "InActive".to_owned()),
            (
                "X-Herald-Registered-At",
                registration.registered_at.to_string(),
            ),
        ];
        let content_type = registration
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let attempt = self
            .delivery
            .post(
                &registration.uri,
                content_type,
                registration.payload.clone(),
                &headers,
            )
            .await;
        let now = self.clock.now();
        let retry = &self.channel_policy.callback_retry;
        let outcome = match attempt {
            Attempt::Delivered => FiringOutcome::Fired,
            Attempt::Failed {
                error,
                retry_after,
                gone,
            } => {
                let attempts = firing.attempts.saturating_add(1);
                let since = firing.failing_since.unwrap_or(now);
                let failing_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
                if gone || retry.gives_up(failing_for) {
                    FiringOutcome::Failed { attempts, error }
                } else {
                    let delay = retry.delay(attempts, retry_after, fastrand::f64());
                    let next_at = SignedDuration::try_from(delay)
                        .ok()
                        .and_then(|d| now.checked_add(d).ok())
                        .unwrap_or(now);
                    FiringOutcome::Retry {
                        attempts,
                        next_at,
                        failing_since: since,
                        error,
                    }
                }
            }
        };
        let label = match &outcome {
            FiringOutcome::Fired => "fired",
            FiringOutcome::Retry { .. } => "retried",
            FiringOutcome::Failed { .. } => "failed",
        };
        metrics
            .channel_callbacks
            .get_or_create(&CallbackFiredLabels { outcome: label })
            .inc();
        self.store
            .record_firing(&firing.token, registration.registered_at, &outcome, now)
            .await?;
        Ok(())
    }
}
