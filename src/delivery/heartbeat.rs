//! Heartbeats (WS-Management `wsman:Heartbeats`): for a reader that asked for them, a
//! heartbeat message whenever nothing was delivered to it for the interval, so that its sink
//! can tell herald is gone when they stop. One task per such reader, ending with it.

use std::sync::Arc;

use tokio::time::Instant;

use super::client::Attempt;
use super::reader::Reader;
use super::sending::Sending;

/// Sends the reader's heartbeats until it ends or herald stops. While a worker runs for the
/// reader (delivering, or retrying a failing sink) its messages stand for heartbeats.
pub(super) async fn run(sending: Arc<Sending>, reader: Arc<Reader>) {
    let Some(beat) = reader.heartbeat() else {
        return;
    };
    let id = reader.id();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(beat.due()) => {}
            () = beat.ended() => return,
            () = sending.stop.cancelled() => return,
        }
        if reader.is_ended() {
            return;
        }
        if beat.due() > Instant::now() {
            continue;
        }
        if reader.is_running() || !sending.lease.permits_sending() {
            beat.sent();
            continue;
        }
        let Some(message) = sending.envelopes.heartbeat(reader.subscription()) else {
            return;
        };
        let attempt = {
            let Ok(_permit) = sending.permits.acquire().await else {
                return;
            };
            sending
                .client
                .send_to(reader.subscription(), reader.notify_to(), &message)
                .await
        };
        match attempt {
            Attempt::Delivered => sending.count("heartbeat"),
            Attempt::Failed { error, .. } => {
                sending.count("heartbeat_failed");
                tracing::debug!(%id, error, "heartbeat not delivered");
            }
        }
        beat.sent();
    }
}
