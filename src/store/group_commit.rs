//! Group commit, on either store: whatever has queued while the previous commit ran goes into
//! the next one, so writes arriving together share one transaction and one fsync (on PostgreSQL
//! one statement: one round trip for the whole batch).

use std::collections::HashSet;
use std::hash::BuildHasher;

use async_trait::async_trait;
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StoreError;

/// Most writes committed in one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// How a store writes a batch of one kind of write in one transaction: each write's answer, in
/// the batch's order, or an error and nothing written.
#[async_trait]
pub(super) trait Commit: Send + Sync + 'static {
    type Write: Send + Sync + 'static;
    type Answer: Send + 'static;

    /// Whether a commit runs on the worker that gathered its batch, blocking it until the
    /// batch is durable (SQLite's statement and sync, through herald's own connection). The
    /// writers a blocking commit answers then run before the next batch is gathered: they would
    /// otherwise wait behind that batch's commit on the same worker, and what they write next
    /// joins it. (On PostgreSQL the commit waits without blocking, and a pause before the next
    /// batch only delays it: measured slower.)
    const BLOCKS: bool = false;

    /// The row a write changes. Two writes to one row never share a batch: the later one waits
    /// for the next, so each sees the other's result in the order they were queued. `None`:
    /// the committer applies a batch's writes one after another, so any may share one.
    fn row(write: &Self::Write) -> Option<&str>;

    /// Waits for the store's turn to write, held while a batch is gathered and committed: on
    /// SQLite its writer lock, so that whatever queues while another writer holds it joins the
    /// batch. None where writers need not take turns.
    async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        None
    }

    /// Exactly one answer per write, in order, within the store's turn.
    async fn commit(&self, batch: &[Self::Write]) -> Result<Vec<Self::Answer>, StoreError>;
}

type Queued<C> = (
    <C as Commit>::Write,
    oneshot::Sender<Result<<C as Commit>::Answer, StoreError>>,
);

/// The queue to one group-commit task.
pub(super) struct Queue<C: Commit> {
    sender: mpsc::Sender<Queued<C>>,
}

impl<C: Commit> Clone for Queue<C> {
    fn clone(&self) -> Self {
        Queue {
            sender: self.sender.clone(),
        }
    }
}

impl<C: Commit> Queue<C> {
    /// Starts the task that commits `committer`'s batches until `closing`.
    pub fn start(committer: C, tasks: &TaskTracker, closing: CancellationToken) -> Queue<C> {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        tasks.spawn(commit_batches(committer, receiver, closing));
        Queue { sender }
    }

    /// Queues `write` for the next group commit and waits for it.
    pub async fn submit(&self, write: C::Write) -> Result<C::Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((write, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Commits batches: whatever has queued while the previous commit ran goes into the next
/// transaction. Should a batch fail, its writes are retried one by one, so one bad write cannot
/// refuse the others.
async fn commit_batches<C: Commit>(
    committer: C,
    mut requests: mpsc::Receiver<Queued<C>>,
    closing: CancellationToken,
) {
    let mut held: Option<Queued<C>> = None;
    // The rows of the batch being gathered, by hash: a set kept from batch to batch, so that
    // gathering a write allocates nothing; a write whose hash is there already is compared
    // with the batch's writes before it is held back.
    // (foldhash, as `domain::maps`: SipHash here was half a percent of a Subscribe.)
    let hashes = foldhash::quality::RandomState::default();
    let mut rows: HashSet<u64, foldhash::quality::RandomState> = HashSet::default();
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                () = closing.cancelled() => {
                    // Whatever still waits is refused, not lost silently: its caller fails.
                    requests.close();
                    while let Ok((_, reply)) = requests.try_recv() {
                        let _ = reply.send(Err(StoreError::Closed));
                    }
                    return;
                }
            },
        };
        let _turn = committer.turn().await;
        rows.clear();
        rows.extend(C::row(&first.0).map(|row| hashes.hash_one(row)));
        let (mut writes, mut replies) = (vec![first.0], vec![first.1]);
        while writes.len() < MAX_BATCH {
            let Ok(request) = requests.try_recv() else {
                break;
            };
            if let Some(row) = C::row(&request.0)
                && !rows.insert(hashes.hash_one(row))
                && writes.iter().any(|write| C::row(write) == Some(row))
            {
                held = Some(request);
                break;
            }
            writes.push(request.0);
            replies.push(request.1);
        }
        if writes.len() > 1
            && let Ok(answers) = committer.commit(&writes).await
        {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        } else {
            for (write, reply) in writes.iter().zip(replies) {
                let result = committer
                    .commit(std::slice::from_ref(write))
                    .await
                    .and_then(|answers| {
                        answers
                            .into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Corrupt("a write returned no answer".into()))
                    });
                let _ = reply.send(result);
            }
        }
        if C::BLOCKS {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Commits nothing; records each batch's rows.
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

    #[async_trait]
    impl Commit for Recorder {
        type Write = String;
        type Answer = ();

        fn row(write: &String) -> Option<&str> {
            Some(write)
        }

        async fn commit(&self, batch: &[String]) -> Result<Vec<()>, StoreError> {
            self.0.lock().unwrap().push(batch.to_vec());
            Ok(vec![(); batch.len()])
        }
    }

    #[tokio::test]
    async fn two_writes_to_one_row_go_in_different_batches_in_their_order() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel(16);
        let mut answers = Vec::new();
        for row in ["a", "b", "a", "c", "b"] {
            let (reply, answer) = oneshot::channel();
            sender.try_send((row.to_owned(), reply)).unwrap();
            answers.push(answer);
        }
        let closing = CancellationToken::new();
        let task = tokio::spawn(commit_batches(
            Recorder(batches.clone()),
            receiver,
            closing.clone(),
        ));
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        closing.cancel();
        task.await.unwrap();
        assert_eq!(
            *batches.lock().unwrap(),
            [vec!["a", "b"], vec!["a", "c", "b"]]
        );
    }

    /// Records each batch's rows once its gate is open, as a commit waits for its I/O.
    struct Gated {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        open: Arc<tokio::sync::watch::Sender<bool>>,
    }

    #[async_trait]
    impl Commit for Gated {
        type Write = String;
        type Answer = ();
        const BLOCKS: bool = true;

        fn row(write: &String) -> Option<&str> {
            Some(write)
        }

        async fn commit(&self, batch: &[String]) -> Result<Vec<()>, StoreError> {
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            self.batches.lock().unwrap().push(batch.to_vec());
            Ok(vec![(); batch.len()])
        }
    }

    /// Lets every other task run until it waits.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_writer_answered_runs_before_the_next_batch_is_gathered() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(tokio::sync::watch::Sender::new(false));
        let committer = Gated {
            batches: batches.clone(),
            open: open.clone(),
        };
        let queue = Queue::start(committer, &TaskTracker::new(), CancellationToken::new());
        // "a" commits alone and "b" queues during that commit; "a"'s writer, once answered,
        // writes "c", which joins "b".
        let first = queue.clone();
        let writer = tokio::spawn(async move {
            first.submit("a".to_owned()).await.unwrap();
            first.submit("c".to_owned()).await.unwrap();
        });
        settle().await;
        let other = tokio::spawn(async move { queue.submit("b".to_owned()).await.unwrap() });
        settle().await;
        open.send_replace(true);
        writer.await.unwrap();
        other.await.unwrap();
        assert_eq!(*batches.lock().unwrap(), [vec!["a"], vec!["b", "c"]]);
    }
}
