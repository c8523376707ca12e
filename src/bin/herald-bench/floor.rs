//! The SOAP echo server made to write each request durably before it answers (scenarios 3 and
//! 7): what a durable Subscribe costs on this machine with the least of a server in front.
//!
//! - [`Floor`], the store's floor (scenario 7): one row per request to PostgreSQL,
//!   group-committed as herald's writes are. Concurrent requests share one `INSERT … SELECT FROM
//!   UNNEST` and one commit on one connection, one batch in flight at a time; the table holds
//!   the least a subscription needs: an identifier (its primary key, in time order as herald's
//!   are), where to send, and when it was made. Nothing here is herald's code: it is what any
//!   server in herald's place would pay for a durable write per Subscribe to this PostgreSQL
//!   server.
//! - [`HeraldStore`]: herald's own store (`herald::store`, SQLite or PostgreSQL), each request
//!   stored as a subscription through `Store::insert_subscription`, as herald's engine stores
//!   one: its group commit, its statement, its schema. Set beside herald's Subscribe and the
//!   plain echo, it parts what the store costs from what the rest of herald costs.

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use herald::domain::expiry::ExpiryKind;
use herald::domain::subscription::{
    EndpointRef, EventingVersion, LogKind, NotificationFormat, ReaderDelivery, SoapVersion,
    SourceName, Subscription, SubscriptionId, WireDialect, WsaVersion,
};
use herald::store::{NodeId, PostgresStore, Store, sqlite::SqliteStore};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tokio::sync::{mpsc, oneshot};

/// A row waiting for its batch, and where to say that it is durable.
struct Pending {
    id: String,
    notify_to: String,
    created_at: i64,
    done: oneshot::Sender<bool>,
}

/// The writer's queue.
#[derive(Clone)]
pub struct Floor {
    queue: Arc<mpsc::UnboundedSender<Pending>>,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS floor (
     id TEXT PRIMARY KEY, notify_to TEXT NOT NULL, created_at BIGINT NOT NULL)";

const INSERT: &str = "INSERT INTO floor (id, notify_to, created_at)
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[])";

impl Floor {
    /// Connects to `url`, makes the table, and starts the writer.
    pub async fn start(url: &str) -> anyhow::Result<Floor> {
        let mut connection = PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        sqlx::query(CREATE).execute(&mut connection).await?;
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(connection, waiting));
        Ok(Floor {
            queue: Arc::new(queue),
        })
    }

    /// Writes one row; true once its batch has committed.
    async fn write(&self, notify_to: String) -> bool {
        let (done, durable) = oneshot::channel();
        let pending = Pending {
            id: uuid::Uuid::now_v7().to_string(),
            notify_to,
            created_at: jiff::Timestamp::now().as_millisecond(),
            done,
        };
        self.queue.send(pending).is_ok() && durable.await.unwrap_or(false)
    }
}

/// One batch at a time: everything queued while the last one committed goes in the next.
async fn write_batches(
    mut connection: PgConnection,
    mut waiting: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::new();
    while waiting.recv_many(&mut batch, 4096).await > 0 {
        let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
        let notify: Vec<&str> = batch.iter().map(|p| p.notify_to.as_str()).collect();
        let created: Vec<i64> = batch.iter().map(|p| p.created_at).collect();
        let written = sqlx::query(INSERT)
            .bind(ids)
            .bind(notify)
            .bind(created)
            .execute(&mut connection)
            .await;
        if let Err(err) = &written {
            eprintln!("floor: batch of {} not written: {err}", batch.len());
        }
        for pending in batch.drain(..) {
            let _ = pending.done.send(written.is_ok());
        }
    }
}

/// herald's own store, written to as herald's engine writes a new subscription.
pub struct HeraldStore {
    store: Box<dyn Store>,
    owner: NodeId,
    source: SourceName,
}

impl HeraldStore {
    /// Opens herald's store at `target`: a PostgreSQL URL, or else a SQLite data directory.
    pub async fn open(target: &str) -> anyhow::Result<HeraldStore> {
        let (store, owner): (Box<dyn Store>, _) = if target.starts_with("postgres") {
            (
                Box::new(PostgresStore::open(target).await?),
                NodeId::random(),
            )
        } else {
            let store = SqliteStore::open(std::path::Path::new(target)).await?;
            let owner = NodeId::parse("embedded").context("the embedded node's name")?;
            (Box::new(store), owner)
        };
        Ok(HeraldStore {
            store,
            owner,
            source: SourceName::parse("default").context("the source's name")?,
        })
    }

    /// Stores a W3C 2011 SOAP 1.2 push subscription to `notify_to`, expiring in six hours, as a
    /// Subscribe of the bench makes; true once durable.
    async fn write(&self, notify_to: String) -> bool {
        let now = jiff::Timestamp::now();
        let subscription = Subscription {
            id: SubscriptionId::new_random(),
            source: self.source.clone(),
            log: LogKind::Source,
            delivery: ReaderDelivery::SoapPush,
            dialect: WireDialect {
                eventing: EventingVersion::W3c2011,
                soap: SoapVersion::Soap12,
                addressing: WsaVersion::W3c2005,
            },
            notify_to: EndpointRef {
                address: notify_to,
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            },
            end_to: None,
            delivery_mode: "http://www.w3.org/2011/03/ws-evt/DeliveryModes/Push".into(),
            format: NotificationFormat::Wrap,
            filter: None,
            expires_at: now.checked_add(jiff::SignedDuration::from_hours(6)).ok(),
            expiry_kind: ExpiryKind::Duration,
            created_at: now,
            manager_address: "http://127.0.0.1/eventing/default/subscriptions".to_owned(),
            webhook: None,
            connection_retry: None,
            wsman: None,
        };
        let stored = self
            .store
            .insert_subscription(&subscription, &self.owner, None)
            .await;
        if let Err(err) = &stored {
            eprintln!("herald store: not stored: {err}");
        }
        stored.is_ok()
    }
}

/// Where the echo writes each request before it answers.
pub enum Durable {
    Floor(Floor),
    Herald(HeraldStore),
}

impl Durable {
    /// The store `options` name, if any.
    pub async fn start(options: &crate::echo::EchoOptions) -> anyhow::Result<Option<Arc<Durable>>> {
        Ok(match (&options.floor, &options.herald_store) {
            (Some(url), _) => Some(Arc::new(Durable::Floor(Floor::start(url).await?))),
            (None, Some(target)) => {
                Some(Arc::new(Durable::Herald(HeraldStore::open(target).await?)))
            }
            (None, None) => None,
        })
    }

    async fn write(&self, notify_to: String) -> bool {
        match self {
            Durable::Floor(floor) => floor.write(notify_to).await,
            Durable::Herald(store) => store.write(notify_to).await,
        }
    }
}

/// The echo's handler, with the row written before the answer.
pub async fn echo_durably(State(durable): State<Arc<Durable>>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(document) = roxmltree::Document::parse(text) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some((message_id, notify_to)) = crate::echo::subscribe_fields(&document) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !durable.write(notify_to.to_owned()).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        [(CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        crate::echo::echo_response(&crate::echo::roxmltree_escape(message_id)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnection;

    #[tokio::test]
    async fn herald_store_behind_the_echo_stores_each_request_as_a_subscription() {
        let dir = tempfile::tempdir().unwrap();
        let store = HeraldStore::open(&dir.path().display().to_string())
            .await
            .unwrap();
        for i in 0..3 {
            assert!(store.write(format!("http://127.0.0.1:9/sink/{i}")).await);
        }
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let mut connection = SqliteConnection::connect(&url).await.unwrap();
        let stored: Vec<(String, String)> = sqlx::query_as(
            "SELECT json_extract(notify_to, '$.address') AS a, status FROM subscriptions \
             WHERE source = 'default' ORDER BY a",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap();
        let expected: Vec<(String, String)> = (0..3)
            .map(|i| (format!("http://127.0.0.1:9/sink/{i}"), "active".to_owned()))
            .collect();
        assert_eq!(stored, expected);
    }
}
