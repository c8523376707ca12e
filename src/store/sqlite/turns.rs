//! Turns at SQLite's one writer connection. Writes take them in the order they ask, except the
//! node's lease renewal, which must not wait behind a queue of batches: a busy node (a start
//! handing a million subscriptions over while deliveries save their progress) could otherwise
//! see its lease lapse and let go of everything it delivers.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};

/// The writer's turns: ordinary writers queue one behind another, and only the first of them
/// waits at the writer itself, where a turn asked [`WriteTurns::first`] joins it.
#[derive(Default)]
pub(super) struct WriteTurns {
    /// Where ordinary writers queue.
    queue: Mutex<()>,
    /// The writer's own turn.
    turn: Arc<Mutex<()>>,
}

impl WriteTurns {
    /// An ordinary write's turn, after every write that asked before it.
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        let _queued = self.queue.lock().await;
        self.turn.lock().await
    }

    /// An ordinary turn that a group commit holds while it gathers and commits a batch.
    pub async fn lock_owned(&self) -> OwnedMutexGuard<()> {
        let _queued = self.queue.lock().await;
        self.turn.clone().lock_owned().await
    }

    /// A turn ahead of the queue: after the write under way and at most one other.
    pub async fn first(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// With ordinary writers queued behind a held turn, a first turn comes after at most one
    /// of them, not after all.
    #[tokio::test]
    async fn a_first_turn_passes_the_queue() {
        let turns = Arc::new(WriteTurns::default());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = turns.lock_owned().await;
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (turns, order) = (turns.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = turns.lock().await;
                order.lock().unwrap().push(format!("ordinary {i}"));
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first = {
            let (turns, order) = (turns.clone(), order.clone());
            tokio::spawn(async move {
                let _turn = turns.first().await;
                order.lock().unwrap().push("first".to_owned());
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        first.await.unwrap();
        for task in waiting {
            task.await.unwrap();
        }
        let order = order.lock().unwrap();
        let at = order.iter().position(|entry| entry == "first").unwrap();
        assert!(
            at <= 1,
            "the first turn came after {at} queued writes: {order:?}"
        );
        assert_eq!(order.len(), 6, "every writer had its turn: {order:?}");
    }
}
