//! The writes of the subscription lifecycle that must be durable before their answer —
//! Subscribe, Renew, Unsubscribe and every other end — each group-committed on either store
//! (see [`super::group_commit`]): concurrent requests share one statement, one transaction and
//! one fsync.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Columns, SubscriptionRow, corrupt, decode_ended, millis, stored_seq};
use super::group_commit::{Commit, Queue};
use super::pulls::PulledCursor;
use super::{NodeId, StoreError};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{EndReason, Ended, SourceName, Subscription, SubscriptionId};

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

/// Each new subscription's starting cursor, in the batch's order, from the ids and cursors an
/// insert returned (in whatever order the database returned them; the two lists side by side).
pub(super) fn cursors_in_order(
    batch: &[NewSubscription],
    ids: Vec<String>,
    cursors: Vec<i64>,
) -> Result<Vec<u64>, StoreError> {
    if ids.len() != cursors.len() {
        return Err(StoreError::Corrupt(format!(
            "{} ids returned with {} cursors",
            ids.len(),
            cursors.len()
        )));
    }
    let returned = ids
        .into_iter()
        .zip(cursors)
        .map(|(id, cursor)| Ok((id, stored_seq("cursor", cursor)?)))
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

/// For each write of a batch of `len`, the index of its values among those returned, from the
/// positions returned with them: each write's place in the batch counted from 1, as `WITH
/// ORDINALITY` counts, for the writes that changed a row. A position outside the batch, or one
/// returned twice, is corrupt.
fn returned_slots(len: usize, positions: &[i64]) -> Result<Vec<Option<usize>>, StoreError> {
    let mut slots = vec![None; len];
    for (k, &position) in positions.iter().enumerate() {
        let slot = usize::try_from(position)
            .ok()
            .and_then(|position| position.checked_sub(1))
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| {
                StoreError::Corrupt(format!("position {position} returned in a batch of {len}"))
            })?;
        if slot.replace(k).is_some() {
            return Err(StoreError::Corrupt(format!(
                "position {position} returned twice"
            )));
        }
    }
    Ok(slots)
}

/// Whether each renewal took, in the batch's order, from the positions of those that did.
pub(super) fn renewed_at(batch: &[Renewal], positions: &[i64]) -> Result<Vec<bool>, StoreError> {
    Ok(returned_slots(batch.len(), positions)?
        .into_iter()
        .map(|slot| slot.is_some())
        .collect())
}

/// What each ending ended, in the batch's order, from the positions of the endings that ended
/// a subscription, with each one's log and whether its SubscriptionEnd was queued (the three
/// lists side by side).
pub(super) fn ended_at(
    batch: &[Ending],
    positions: &[i64],
    sources: &[String],
    notices: &[bool],
) -> Result<Vec<Option<Ended>>, StoreError> {
    if sources.len() != positions.len() || notices.len() != positions.len() {
        return Err(StoreError::Corrupt(format!(
            "{} positions returned with {} logs and {} notices",
            positions.len(),
            sources.len(),
            notices.len()
        )));
    }
    returned_slots(batch.len(), positions)?
        .into_iter()
        .zip(batch)
        .map(|(slot, write)| {
            slot.map(|k| {
                Ok(Ended {
                    id: SubscriptionId::parse(&write.id).ok_or_else(|| corrupt("id", &write.id))?,
                    source: SourceName::parse(&sources[k])
                        .ok_or_else(|| corrupt("source", &sources[k]))?,
                    notice: notices[k],
                })
            })
            .transpose()
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
        let cursors = |order: &[usize]| {
            let (ids, cursors) = order
                .iter()
                .map(|&i| (batch[i].row.id.clone(), 10 * i as i64 + 7))
                .unzip();
            cursors_in_order(&batch, ids, cursors)
        };
        let wanted = vec![7, 17, 27, 37];
        assert_eq!(cursors(&[0, 1, 2, 3]).unwrap(), wanted);
        assert_eq!(cursors(&[3, 1, 0, 2]).unwrap(), wanted);
        assert_eq!(cursors(&[1, 0, 2, 3]).unwrap(), wanted);
        for short in [&[0, 1, 2][..], &[3, 2, 1][..], &[0, 1, 2, 2][..]] {
            assert!(
                matches!(cursors(short), Err(StoreError::Corrupt(_))),
                "rows {short:?}"
            );
        }
        let id = batch[0].row.id.clone();
        assert!(matches!(
            cursors_in_order(&batch[..1], vec![id], vec![1, 2]),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Renewals and endings are answered by their positions in the batch, in any order
    /// returned; a position outside the batch or returned twice is corrupt.
    #[test]
    fn renewals_and_endings_are_answered_by_position() {
        let renewal = |id: &str| Renewal {
            id: id.into(),
            expires_at: None,
            kind: "none",
            now: 0,
        };
        let renewals: Vec<Renewal> = ["a", "b", "c", "d"].map(renewal).into();
        assert_eq!(
            renewed_at(&renewals, &[4, 2]).unwrap(),
            [false, true, false, true]
        );
        assert_eq!(renewed_at(&renewals, &[]).unwrap(), [false; 4]);
        for bad in [&[0][..], &[5], &[-1], &[2, 2]] {
            assert!(
                matches!(renewed_at(&renewals, bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
        let ids: Vec<String> = (0..3)
            .map(|_| crate::store::fixtures::subscription().id.to_string())
            .collect();
        let endings: Vec<Ending> = ids
            .iter()
            .map(|id| Ending {
                id: id.clone(),
                reason: "unsubscribed",
                now: 0,
            })
            .collect();
        let ended = ended_at(
            &endings,
            &[3, 1],
            &["third".into(), "first".into()],
            &[true, false],
        )
        .unwrap();
        let answers: Vec<Option<(String, &str, bool)>> = ended
            .iter()
            .map(|e| {
                e.as_ref()
                    .map(|e| (e.id.to_string(), e.source.as_str(), e.notice))
            })
            .collect();
        assert_eq!(
            answers,
            [
                Some((ids[0].clone(), "first", false)),
                None,
                Some((ids[2].clone(), "third", true)),
            ]
        );
        assert!(matches!(
            ended_at(&endings, &[1, 2], &["a".into()], &[true, true]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            ended_at(&endings, &[4], &["a".into()], &[true]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
