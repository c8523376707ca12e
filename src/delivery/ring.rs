//! The recent tail of a source's log, kept in memory so that many subscriptions reading the
//! same new event do not each read the store: a gapless run of events ending at the log's head,
//! bounded in count and in bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::domain::event::Event;
use crate::filter::EventView;

/// How much the ring may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RingLimits {
    /// Events.
    pub events: usize,
    /// Bytes of payload and action.
    pub bytes: usize,
}

/// The recent tail of one source's log.
#[derive(Default)]
pub(super) struct Ring {
    /// The last sequence number made durable.
    pub head: u64,
    events: VecDeque<Arc<EventView>>,
    /// Payload and action bytes of `events`.
    bytes: usize,
}

/// What an event counts for in the byte bound.
fn size_of(event: &Event) -> usize {
    event.payload.len() + event.action.len()
}

impl Ring {
    /// An empty ring whose head is `head`.
    pub fn starting_at(head: u64) -> Ring {
        Ring {
            head,
            ..Ring::default()
        }
    }

    /// Appends events in sequence order, then drops the oldest beyond `limits`. Events already
    /// there are skipped; when the next one is not the one after the head (others were
    /// compacted before this node read them), the ring starts over, since it must hold a
    /// gapless run ending at the head.
    pub fn extend(&mut self, events: &[Arc<Event>], limits: RingLimits) {
        for event in events {
            if event.seq <= self.head {
                continue;
            }
            if event.seq != self.head + 1 {
                self.events.clear();
                self.bytes = 0;
            }
            self.head = event.seq;
            self.bytes += size_of(event);
            self.events
                .push_back(Arc::new(EventView::new(event.clone())));
        }
        while self.events.len() > limits.events || self.bytes > limits.bytes {
            match self.events.pop_front() {
                Some(oldest) => self.bytes -= size_of(oldest.event()),
                None => break,
            }
        }
    }

    /// Up to `limit` events after `cursor`, when the ring reaches back that far: `None` when
    /// they must be read from the store.
    pub fn after(&self, cursor: u64, limit: usize) -> Option<Vec<Arc<EventView>>> {
        if self.head <= cursor {
            return Some(Vec::new());
        }
        let first = self.events.front()?;
        if first.event().seq > cursor + 1 {
            return None;
        }
        let skip = usize::try_from(cursor + 1 - first.event().seq).unwrap_or(usize::MAX);
        Some(self.events.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Events and bytes held.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.events.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, bytes: usize) -> Arc<Event> {
        Arc::new(Event {
            seq,
            source: crate::domain::subscription::SourceName::parse("s").unwrap(),
            id: crate::domain::event::EventId::new(),
            action: String::new(),
            payload: "x".repeat(bytes),
            published_at: jiff::Timestamp::UNIX_EPOCH,
        })
    }

    #[test]
    fn bounded_by_count_and_by_bytes() {
        let limits = RingLimits {
            events: 100,
            bytes: 10_000,
        };
        let mut ring = Ring::default();
        let small: Vec<_> = (1..=150).map(|seq| event(seq, 10)).collect();
        ring.extend(&small, limits);
        assert_eq!(ring.held(), (100, 1000), "count bound");
        // 1,500 events of 1 KB: only the last ten fit in 10,000 bytes.
        let large: Vec<_> = (151..=1650).map(|seq| event(seq, 1000)).collect();
        ring.extend(&large, limits);
        assert_eq!(ring.held(), (10, 10_000), "byte bound");
        assert_eq!(ring.head, 1650);
        // Older events come from the store; the last ten from memory, in order.
        assert!(ring.after(1600, 64).is_none());
        let recent = ring.after(1640, 64).unwrap();
        let seqs: Vec<u64> = recent.iter().map(|view| view.event().seq).collect();
        assert_eq!(seqs, (1641..=1650).collect::<Vec<_>>());
        assert_eq!(ring.after(1650, 64).unwrap().len(), 0);
        // One event larger than the bound is not kept at all.
        ring.extend(&[event(1651, 20_000)], limits);
        assert_eq!(ring.held(), (0, 0));
        assert!(ring.after(1650, 64).is_none());
    }

    #[test]
    fn a_gap_starts_the_ring_over() {
        let limits = RingLimits {
            events: 100,
            bytes: 1 << 20,
        };
        let mut ring = Ring::default();
        ring.extend(&[event(1, 5), event(2, 5)], limits);
        ring.extend(&[event(2, 5), event(5, 5)], limits);
        assert_eq!(ring.held(), (1, 5));
        assert_eq!(ring.head, 5);
    }
}
