//! What a node owns, read by its store a page ahead of the start that hands it over.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::{StoreError, joined};
use crate::domain::subscription::{DeliveryProgress, Subscription};

/// Subscriptions with their stored delivery progress.
pub type Owned = Vec<(Subscription, DeliveryProgress)>;

/// Pages read and waiting (decoded or being decoded) for the start to take them.
const READ_AHEAD: usize = 2;

/// The subscriptions of one page, being decoded on a thread of the runtime's blocking pool, so
/// that requests and the lease's renewal go on beside it and the next page is read meanwhile.
pub struct PageItems(tokio::task::JoinHandle<Result<Owned, StoreError>>);

impl PageItems {
    /// Decodes on the blocking pool.
    pub fn decode(decode: impl FnOnce() -> Result<Owned, StoreError> + Send + 'static) -> Self {
        PageItems(tokio::task::spawn_blocking(decode))
    }
}

/// Where a store's reading sends the pages it has read.
pub struct PageSender(mpsc::Sender<Result<PageItems, StoreError>>);

impl PageSender {
    /// Hands `page` on once there is room; false when the pages are no longer wanted.
    pub async fn send(&self, page: PageItems) -> bool {
        self.0.send(Ok(page)).await.is_ok()
    }
}

/// The active, unexpired subscriptions a node owns, page by page ([`super::Store::owned`]);
/// dropped, it stops the reading.
pub struct OwnedPages {
    pages: mpsc::Receiver<Result<PageItems, StoreError>>,
    reading: Option<AbortOnDropHandle<()>>,
}

impl OwnedPages {
    /// Runs `read` as a task of its own, sending pages as it reads them; its error comes as
    /// the last page.
    pub fn read<F>(read: impl FnOnce(PageSender) -> F) -> OwnedPages
    where
        F: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let (sender, pages) = mpsc::channel(READ_AHEAD);
        let failed = sender.clone();
        let reading = read(PageSender(sender));
        let task = tokio::spawn(async move {
            if let Err(err) = reading.await {
                let _ = failed.send(Err(err)).await;
            }
        });
        OwnedPages {
            pages,
            reading: Some(AbortOnDropHandle::new(task)),
        }
    }

    /// The next page, decoded; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Owned>, StoreError> {
        if let Some(page) = self.pages.recv().await {
            return Ok(Some(joined(page?.0.await)?));
        }
        // Every sender is gone: the reading ended, or it panicked (which goes on here).
        if let Some(reading) = self.reading.take() {
            joined(reading.await.map(Ok))?;
        }
        Ok(None)
    }

    /// Every page, in order, as one vector.
    pub async fn all(mut self) -> Result<Owned, StoreError> {
        let mut all = Vec::new();
        while let Some(page) = self.next().await? {
            all.extend(page);
        }
        Ok(all)
    }
}
