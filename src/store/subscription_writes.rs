//! The writes of the subscription lifecycle that must be durable before their answer —
//! Subscribe, Renew, Unsubscribe and every other end — each group-committed on either store
//! (see [`super::group_commit`]): concurrent requests share one statement, one transaction and
//! one fsync.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Columns, SubscriptionRow, decode_ended, millis, stored_seq};
use super::group_commit::{Commit, Queue};
use super::pulls::PulledCursor;
use super::{NodeId, StoreError};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{EndReason, Ended, Subscription, SubscriptionId};

/// A new subscription, owned by `owner`, its cursor at `start_after` or else at its log's head.
pub(super) struct NewSubscription {
    pub row: SubscriptionRow,
    pub owner: String,
    pub start_after: Option<i64>,
}

/// A new expiry for a subscription active and unexpired at `now`.
pub(super) struct Renewal {
    pub id: String,
    pub expires_at: Option<i64>,
    pub kind: &'static str,
    pub now: i64,
}

/// The end of a subscription active and unexpired at `now`.
pub(super) struct Ending {
    pub id: String,
    pub reason: &'static str,
    pub now: i64,
}

/// A Pull's position for a pulled subscription active and unexpired at `now`.
pub(super) struct PullAdvance {
    pub id: String,
    pub position: i64,
    pub now: i64,
}

/// The queues to a store's four group commits.
pub(super) struct SubscriptionWrites<I, R, E, P>
where
    I: Commit<Write = NewSubscription, Answer = u64>,
    R: Commit<Write = Renewal, Answer = bool>,
    E: Commit<Write = Ending, Answer = Option<Ended>>,
    P: Commit<Write = PullAdvance, Answer = Option<PulledCursor>>,
{
    inserts: Queue<I>,
    renewals: Queue<R>,
    ends: Queue<E>,
    pulls: Queue<P>,
}

impl<I, R, E, P> Clone for SubscriptionWrites<I, R, E, P>
where
    I: Commit<Write = NewSubscription, Answer = u64>,
    R: Commit<Write = Renewal, Answer = bool>,
    E: Commit<Write = Ending, Answer = Option<Ended>>,
    P: Commit<Write = PullAdvance, Answer = Option<PulledCursor>>,
{
    fn clone(&self) -> Self {
        SubscriptionWrites {
            inserts: self.inserts.clone(),
            renewals: self.renewals.clone(),
            ends: self.ends.clone(),
            pulls: self.pulls.clone(),
        }
    }
}

impl<I, R, E, P> SubscriptionWrites<I, R, E, P>
where
    I: Commit<Write = NewSubscription, Answer = u64>,
    R: Commit<Write = Renewal, Answer = bool>,
    E: Commit<Write = Ending, Answer = Option<Ended>>,
    P: Commit<Write = PullAdvance, Answer = Option<PulledCursor>>,
{
    /// Starts the four group-commit tasks, which run until `closing`.
    pub fn start(
        (inserts, renewals, ends, pulls): (I, R, E, P),
        tasks: &TaskTracker,
        closing: &CancellationToken,
    ) -> Self {
        SubscriptionWrites {
            inserts: Queue::start(inserts, tasks, closing.clone()),
            renewals: Queue::start(renewals, tasks, closing.clone()),
            ends: Queue::start(ends, tasks, closing.clone()),
            pulls: Queue::start(pulls, tasks, closing.clone()),
        }
    }

    /// Moves a pulled subscription's cursor as [`super::pulls::Pulls::advance_pulled`] says.
    pub async fn advance_pulled(
        &self,
        id: SubscriptionId,
        position: u64,
        now: Timestamp,
    ) -> Result<Option<PulledCursor>, StoreError> {
        self.pulls
            .submit(PullAdvance {
                id: id.key(),
                position: i64::try_from(position).unwrap_or(i64::MAX),
                now: millis(now),
            })
            .await
    }

    /// Stores `subscription` and returns its starting cursor, once durable.
    pub async fn insert(
        &self,
        subscription: &Subscription,
        owner: &NodeId,
        start_after: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inserts
            .submit(NewSubscription {
                row: SubscriptionRow::encode(subscription),
                owner: owner.as_str().to_owned(),
                start_after: start_after.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX)),
            })
            .await
    }

    /// Sets a new expiry; false when the subscription is not active and unexpired at `now`.
    pub async fn renew(
        &self,
        id: SubscriptionId,
        expires_at: Option<Timestamp>,
        kind: ExpiryKind,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.renewals
            .submit(Renewal {
                id: id.key(),
                expires_at: expires_at.map(millis),
                kind: kind.as_str(),
                now: millis(now),
            })
            .await
    }

    /// Ends a subscription active and unexpired at `now`, returning what delivery needs to let
    /// it go.
    pub async fn end(
        &self,
        id: SubscriptionId,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Ended>, StoreError> {
        self.ends
            .submit(Ending {
                id: id.key(),
                reason: reason.as_str(),
                now: millis(now),
            })
            .await
    }
}

/// Each new subscription's starting cursor, in the batch's order, from the `id` and `cursor`
/// columns of the rows an insert returned (in whatever order the database returned them).
pub(super) fn cursors_in_order<R: Columns>(
    batch: &[NewSubscription],
    rows: &[R],
) -> Result<Vec<u64>, StoreError> {
    let returned = rows
        .iter()
        .map(|row| Ok((row.text("id")?, stored_seq("cursor", row.int("cursor")?)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    // The rows come back in the batch's order in practice: then each is its write's, with no
    // map to build.
    let in_order = returned.len() == batch.len()
        && returned
            .iter()
            .zip(batch)
            .all(|((id, _), write)| *id == write.row.id);
    if in_order {
        return Ok(returned.into_iter().map(|(_, cursor)| cursor).collect());
    }
    let cursors: HashMap<String, u64> = returned.into_iter().collect();
    batch
        .iter()
        .map(|write| {
            cursors.get(&write.row.id).copied().ok_or_else(|| {
                StoreError::Corrupt(format!("no cursor returned for {}", write.row.id))
            })
        })
        .collect()
}

/// Whether each renewal took, in the batch's order, from the `id` column of the rows changed.
pub(super) fn renewed<R: Columns>(batch: &[Renewal], rows: &[R]) -> Result<Vec<bool>, StoreError> {
    let changed = rows
        .iter()
        .map(|row| row.text("id"))
        .collect::<Result<HashSet<_>, _>>()?;
    Ok(batch
        .iter()
        .map(|write| changed.contains(&write.id))
        .collect())
}

/// What each ending ended, in the batch's order, from the rows ended (selected with
/// [`super::codec::ended_columns`]).
pub(super) fn ended<R: Columns>(
    batch: &[Ending],
    rows: &[R],
) -> Result<Vec<Option<Ended>>, StoreError> {
    let mut ended = HashMap::with_capacity(rows.len());
    for row in rows {
        ended.insert(row.text("id")?, decode_ended(row)?);
    }
    Ok(batch.iter().map(|write| ended.remove(&write.id)).collect())
}

/// Where each advanced pulled subscription stands, in the batch's order, from the `id`,
/// `cursor` and `head` columns of the rows changed (none: no such subscription).
pub(super) fn advanced<R: Columns>(
    batch: &[PullAdvance],
    rows: &[R],
) -> Result<Vec<Option<PulledCursor>>, StoreError> {
    let mut advanced = HashMap::with_capacity(rows.len());
    for row in rows {
        let pulled = super::pulls::decode_pulled(row.int("cursor")?, row.int("head")?)?;
        advanced.insert(row.text("id")?, pulled);
    }
    Ok(batch
        .iter()
        .map(|write| advanced.remove(&write.id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A returned row of an insert: its id and starting cursor.
    struct Inserted(String, i64);

    impl Columns for Inserted {
        fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
            assert_eq!(name, "id");
            Ok(Some(self.0.clone()))
        }
        fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
            assert_eq!(name, "cursor");
            Ok(Some(self.1))
        }
    }

    fn new_subscription() -> NewSubscription {
        let subscription = crate::store::fixtures::subscription();
        NewSubscription {
            row: SubscriptionRow::encode(&subscription),
            owner: "embedded".into(),
            start_after: None,
        }
    }

    /// Each write gets its own row's cursor whatever order the rows come back in, and a write
    /// with no row is refused as corrupt rather than given another's cursor.
    #[test]
    fn each_insert_gets_its_own_rows_cursor_in_any_order() {
        let batch: Vec<NewSubscription> = (0..4).map(|_| new_subscription()).collect();
        let rows = |order: &[usize]| -> Vec<Inserted> {
            order
                .iter()
                .map(|&i| Inserted(batch[i].row.id.clone(), 10 * i as i64 + 7))
                .collect()
        };
        let wanted = vec![7, 17, 27, 37];
        assert_eq!(
            cursors_in_order(&batch, &rows(&[0, 1, 2, 3])).unwrap(),
            wanted
        );
        assert_eq!(
            cursors_in_order(&batch, &rows(&[3, 1, 0, 2])).unwrap(),
            wanted
        );
        assert_eq!(
            cursors_in_order(&batch, &rows(&[1, 0, 2, 3])).unwrap(),
            wanted
        );
        for short in [&[0, 1, 2][..], &[3, 2, 1][..], &[0, 1, 2, 2][..]] {
            assert!(
                matches!(
                    cursors_in_order(&batch, &rows(short)),
                    Err(StoreError::Corrupt(_))
                ),
                "rows {short:?}"
            );
        }
    }
}
