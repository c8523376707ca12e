//! Other nodes' signals: appends, ends and releases are announced with `NOTIFY` on the
//! schema's channel, and a listener task forwards them to this node's delivery.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::{NodeId, Signal, StoreError};
use crate::domain::subscription::{SourceName, SubscriptionId};

/// A listener on `channel`.
pub(super) async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Forwards what `listener` hears as signals, from a task tracked by `tasks` that ends when
/// `closing` fires, the pool closes, or the receiver is dropped.
pub(super) fn forward(
    mut listener: PgListener,
    closing: CancellationToken,
    tasks: &TaskTracker,
) -> mpsc::Receiver<Signal> {
    let (tx, rx) = mpsc::channel(1024);
    tasks.spawn(async move {
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = closing.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    for signal in parse_signals(notification.payload()) {
                        if tx.send(signal).await.is_err() {
                            return;
                        }
                    }
                }
                // The connection was lost and is being re-established: what was announced
                // meanwhile is gone, so have the node look at everything.
                Ok(None) => {
                    if tx.send(Signal::Released).await.is_err() {
                        return;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "listening for other nodes failed; polling");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The signals one notification carries: several ends (`e:uuid:…,uuid:…`, a batch's), or one
/// of the others; none for what is not understood.
fn parse_signals(payload: &str) -> Vec<Signal> {
    match payload.strip_prefix("e:") {
        Some(ids) => ids
            .split(',')
            .filter_map(SubscriptionId::parse)
            .map(Signal::Ended)
            .collect(),
        None => parse_signal(payload).into_iter().collect(),
    }
}

fn parse_signal(payload: &str) -> Option<Signal> {
    match payload.split_once(':') {
        Some(("a", rest)) => {
            let (source, head) = rest.rsplit_once(':')?;
            Some(Signal::Appended(
                SourceName::parse(source)?,
                head.parse().ok()?,
            ))
        }
        Some(("m", rest)) => {
            let (id, node) = rest.split_once(':')?;
            Some(Signal::Moved(
                SubscriptionId::parse(id)?,
                NodeId::parse(node)?,
            ))
        }
        _ if payload == "r" => Some(Signal::Released),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_from_their_payloads() {
        assert_eq!(
            parse_signal("a:orders:42"),
            Some(Signal::Appended(SourceName::parse("orders").unwrap(), 42))
        );
        assert_eq!(parse_signal("a:orders"), None);
        let id = SubscriptionId::new_random();
        assert_eq!(parse_signals(&format!("e:{id}")), vec![Signal::Ended(id)]);
        let other = SubscriptionId::new_random();
        assert_eq!(
            parse_signals(&format!("e:{id},{other},not-an-id")),
            vec![Signal::Ended(id), Signal::Ended(other)]
        );
        assert_eq!(parse_signals("e:"), vec![]);
        assert_eq!(parse_signal("r"), Some(Signal::Released));
        assert_eq!(
            parse_signal(&format!("m:{}:node-2", id.key())),
            Some(Signal::Moved(id, NodeId::parse("node-2").unwrap()))
        );
        assert_eq!(parse_signal("a:bad/name"), None);
        assert_eq!(parse_signal("zzz"), None);
    }
}
