//! Conversions between domain values and column values, shared by every backend.

use std::borrow::Cow;

use jiff::Timestamp;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::StoreError;
use crate::domain::event::{Event, EventId};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    ConnectionRetry, DeliveryProgress, EndNotice, EndReason, Ended, EndpointRef, EventingVersion,
    Filter, LogKind, NotificationFormat, ReaderDelivery, SoapVersion, SourceName, Subscription,
    SubscriptionId, SubscriptionRecord, SubscriptionStatus, WireDialect, WsaVersion,
};
use crate::domain::webhook::{WebhookSecret, WebhookSettings};

/// A subscription row as plain column values, in the order of [`subscription_columns`]. The
/// names of a subscription's enumerated values are borrowed when it is encoded, not copied.
#[derive(Clone)]
pub struct SubscriptionRow {
    pub id: String,
    pub source: String,
    pub eventing: Cow<'static, str>,
    pub soap: Cow<'static, str>,
    pub addressing: Cow<'static, str>,
    pub notify_to: String,
    pub end_to: Option<String>,
    pub delivery_mode: String,
    pub format: Cow<'static, str>,
    pub filter: Option<String>,
    pub expires_at: Option<i64>,
    pub expiry_kind: Cow<'static, str>,
    pub created_at: i64,
    pub manager_address: String,
    pub log_kind: Cow<'static, str>,
    pub delivery: Cow<'static, str>,
    pub webhook: Option<String>,
    pub retry_interval_ms: Option<i64>,
    pub retry_total: Option<i64>,
    pub wsman: Option<String>,
}

/// The subscription columns every query selects, in [`SubscriptionRow`] order; a macro so that
/// queries stay `&'static str` with `concat!`. On PostgreSQL a new subscription is bound as a
/// `subscription_insert` record (migration 12, written by `postgres::insert_rows`): a column
/// added here goes into that type and its writer too.
macro_rules! subscription_columns {
    () => {
        "id, source, eventing, soap, addressing, notify_to, end_to, \
         delivery_mode, format, filter, expires_at, expiry_kind, created_at, manager_address, \
         log_kind, delivery, webhook, retry_interval_ms, retry_total, wsman"
    };
}
pub(crate) use subscription_columns;

/// Milliseconds since the Unix epoch: the unit every timestamp is stored in.
pub fn millis(at: Timestamp) -> i64 {
    at.as_millisecond()
}

/// A stored timestamp.
pub fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|_| corrupt("timestamp", &ms.to_string()))
}

/// A stored optional timestamp.
pub fn optional_timestamp(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(timestamp).transpose()
}

/// Delivery progress as column values.
pub struct ProgressRow {
    pub cursor: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
}

impl ProgressRow {
    /// The columns for a progress value.
    pub fn encode(progress: &DeliveryProgress) -> ProgressRow {
        ProgressRow {
            cursor: i64::try_from(progress.cursor).unwrap_or(i64::MAX),
            attempts: i64::from(progress.attempts),
            next_attempt_at: progress.next_attempt_at.map(millis),
            failing_since: progress.failing_since.map(millis),
            last_error: progress.last_error.clone(),
        }
    }

    /// The progress value the columns hold.
    pub fn decode(self) -> Result<DeliveryProgress, StoreError> {
        Ok(DeliveryProgress {
            cursor: stored_seq("cursor", self.cursor)?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt("attempts", &self.attempts.to_string()))?,
            next_attempt_at: optional_timestamp(self.next_attempt_at)?,
            failing_since: optional_timestamp(self.failing_since)?,
            last_error: self.last_error,
        })
    }
}

/// An event row as column values.
pub struct EventRow {
    pub source: String,
    pub seq: i64,
    pub id: String,
    pub action: String,
    pub payload: String,
    pub published_at: i64,
}

impl EventRow {
    /// The event the columns hold.
    pub fn decode(self) -> Result<Event, StoreError> {
        Ok(Event {
            source: SourceName::parse(&self.source)
                .ok_or_else(|| corrupt("source", &self.source))?,
            seq: stored_seq("seq", self.seq)?,
            id: EventId::parse(&self.id).ok_or_else(|| corrupt("event id", &self.id))?,
            action: self.action,
            payload: self.payload,
            published_at: timestamp(self.published_at)?,
        })
    }
}

/// A stored sequence number or cursor; a negative one is corrupt.
pub fn stored_seq(what: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what, &value.to_string()))
}

/// A stored attempt count; a negative or huge one is corrupt.
pub fn stored_count(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, &value.to_string()))
}

pub(super) fn corrupt(what: &str, value: &str) -> StoreError {
    let value: String = value.chars().take(80).collect();
    StoreError::Corrupt(format!("{what} = {value:?}"))
}

/// A filter as its column holds it.
pub fn encode_filter(filter: &Filter) -> String {
    json(filter)
}

/// An endpoint reference as its column holds it.
pub fn encode_endpoint(endpoint: &EndpointRef) -> String {
    json(endpoint)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain structs of strings cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(what, text))
}

/// A webhook secret as its column holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSecret {
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// A webhook's secrets as their column holds them.
pub fn encode_webhook(settings: &WebhookSettings) -> String {
    let secrets: Vec<StoredSecret> = settings
        .secrets
        .iter()
        .map(|secret| StoredSecret {
            secret: secret.secret.clone(),
            until: secret.until.map(millis),
        })
        .collect();
    json(&secrets)
}

fn decode_webhook(text: &str) -> Result<WebhookSettings, StoreError> {
    let secrets: Vec<StoredSecret> = from_json("webhook", text)?;
    Ok(WebhookSettings {
        secrets: secrets
            .into_iter()
            .map(|secret| {
                Ok(WebhookSecret {
                    secret: secret.secret,
                    until: optional_timestamp(secret.until)?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

impl SubscriptionRow {
    /// The row for a subscription.
    pub fn encode(subscription: &Subscription) -> SubscriptionRow {
        SubscriptionRow {
            id: subscription.id.key(),
            source: subscription.source.as_str().to_owned(),
            eventing: subscription.dialect.eventing.as_str().into(),
            soap: subscription.dialect.soap.as_str().into(),
            addressing: subscription.dialect.addressing.as_str().into(),
            notify_to: json(&subscription.notify_to),
            end_to: subscription.end_to.as_ref().map(json),
            delivery_mode: subscription.delivery_mode.clone(),
            format: subscription.format.as_str().into(),
            filter: subscription.filter.as_ref().map(json),
            expires_at: subscription.expires_at.map(millis),
            expiry_kind: subscription.expiry_kind.as_str().into(),
            created_at: millis(subscription.created_at),
            manager_address: subscription.manager_address.clone(),
            log_kind: subscription.log.as_str().into(),
            delivery: subscription.delivery.as_str().into(),
            webhook: subscription.webhook.as_ref().map(encode_webhook),
            retry_interval_ms: subscription
                .connection_retry
                .map(|retry| duration_millis(retry.interval)),
            retry_total: subscription
                .connection_retry
                .map(|retry| i64::from(retry.total)),
            wsman: subscription.wsman.as_ref().map(json),
        }
    }

    /// The subscription a row holds, or `Corrupt` naming the first bad column.
    pub fn decode(self) -> Result<Subscription, StoreError> {
        let id = SubscriptionId::parse(&self.id).ok_or_else(|| corrupt("id", &self.id))?;
        let source =
            SourceName::parse(&self.source).ok_or_else(|| corrupt("source", &self.source))?;
        let eventing = EventingVersion::from_name(&self.eventing)
            .ok_or_else(|| corrupt("eventing", &self.eventing))?;
        let soap = SoapVersion::from_name(&self.soap).ok_or_else(|| corrupt("soap", &self.soap))?;
        let addressing = WsaVersion::from_name(&self.addressing)
            .ok_or_else(|| corrupt("addressing", &self.addressing))?;
        let notify_to: EndpointRef = from_json("notify_to", &self.notify_to)?;
        let end_to = self
            .end_to
            .as_deref()
            .map(|text| from_json::<EndpointRef>("end_to", text))
            .transpose()?;
        let format = NotificationFormat::from_name(&self.format)
            .ok_or_else(|| corrupt("format", &self.format))?;
        let filter = self
            .filter
            .as_deref()
            .map(|text| from_json::<Filter>("filter", text))
            .transpose()?;
        let expiry_kind = ExpiryKind::from_name(&self.expiry_kind)
            .ok_or_else(|| corrupt("expiry_kind", &self.expiry_kind))?;
        let log = LogKind::from_name(&self.log_kind)
            .ok_or_else(|| corrupt("log_kind", &self.log_kind))?;
        let delivery = ReaderDelivery::from_name(&self.delivery)
            .ok_or_else(|| corrupt("delivery", &self.delivery))?;
        Ok(Subscription {
            id,
            source,
            log,
            delivery,
            dialect: WireDialect {
                eventing,
                soap,
                addressing,
            },
            notify_to,
            end_to: end_to.map(Box::new),
            delivery_mode: self.delivery_mode,
            format,
            filter,
            expires_at: self.expires_at.map(timestamp).transpose()?,
            expiry_kind,
            created_at: timestamp(self.created_at)?,
            manager_address: self.manager_address,
            webhook: self.webhook.as_deref().map(decode_webhook).transpose()?,
            connection_retry: match (self.retry_interval_ms, self.retry_total) {
                (Some(ms), Some(total)) => Some(ConnectionRetry {
                    interval: std::time::Duration::from_millis(
                        u64::try_from(ms)
                            .map_err(|_| corrupt("retry_interval_ms", &ms.to_string()))?,
                    ),
                    total: stored_count("retry_total", total)?,
                }),
                _ => None,
            },
            wsman: self
                .wsman
                .as_deref()
                .map(|text| from_json("wsman", text))
                .transpose()?,
        })
    }
}

/// The columns of a result row, whatever the database: every backend stores text and 64-bit
/// integers only, so one decoder serves them all.
pub trait Columns {
    /// A nullable text column.
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// A nullable integer column.
    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// A text column. A NULL where a value must be is corrupt (some drivers would decode it as
    /// "").
    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.optional_text(name)?
            .ok_or_else(|| corrupt(name, "NULL"))
    }

    /// An integer column; a NULL is corrupt (some drivers would decode it as 0).
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.optional_int(name)?
            .ok_or_else(|| corrupt(name, "NULL"))
    }
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
}

/// The subscription in a row selected with [`subscription_columns`].
pub fn decode_subscription(row: &impl Columns) -> Result<Subscription, StoreError> {
    SubscriptionRow {
        id: row.text("id")?,
        source: row.text("source")?,
        eventing: row.text("eventing")?.into(),
        soap: row.text("soap")?.into(),
        addressing: row.text("addressing")?.into(),
        notify_to: row.text("notify_to")?,
        end_to: row.optional_text("end_to")?,
        delivery_mode: row.text("delivery_mode")?,
        format: row.text("format")?.into(),
        filter: row.optional_text("filter")?,
        expires_at: row.optional_int("expires_at")?,
        expiry_kind: row.text("expiry_kind")?.into(),
        created_at: row.int("created_at")?,
        manager_address: row.text("manager_address")?,
        log_kind: row.text("log_kind")?.into(),
        delivery: row.text("delivery")?.into(),
        webhook: row.optional_text("webhook")?,
        retry_interval_ms: row.optional_int("retry_interval_ms")?,
        retry_total: row.optional_int("retry_total")?,
        wsman: row.optional_text("wsman")?,
    }
    .decode()
}

/// What an end returns of each ended row (see [`decode_ended`]).
macro_rules! ended_columns {
    () => {
        "id, source, end_notice"
    };
}
pub(crate) use ended_columns;

/// A row an end returned with [`ended_columns`]: its id, its log, and whether its
/// SubscriptionEnd was queued.
pub fn decode_ended(row: &impl Columns) -> Result<Ended, StoreError> {
    let id = row.text("id")?;
    let source = row.text("source")?;
    Ok(Ended {
        id: SubscriptionId::parse(&id).ok_or_else(|| corrupt("id", &id))?,
        source: SourceName::parse(&source).ok_or_else(|| corrupt("source", &source))?,
        notice: row.optional_text("end_notice")?.is_some(),
    })
}

/// The delivery progress in a row selected with [`progress_columns`].
pub fn decode_progress(row: &impl Columns) -> Result<DeliveryProgress, StoreError> {
    ProgressRow {
        cursor: row.int("cursor")?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.optional_int("next_attempt_at")?,
        failing_since: row.optional_int("failing_since")?,
        last_error: row.optional_text("last_error")?,
    }
    .decode()
}

/// Rows selected with [`subscription_columns`] and [`progress_columns`].
pub fn decode_with_progress<R: Columns>(
    rows: &[R],
) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError> {
    // Sized once (see `decode_json_page`): collecting into a Result grows it from nothing.
    let mut decoded = Vec::with_capacity(rows.len());
    for row in rows {
        decoded.push((decode_subscription(row)?, decode_progress(row)?));
    }
    Ok(decoded)
}

/// An event row.
pub fn decode_event(row: &impl Columns) -> Result<Event, StoreError> {
    EventRow {
        source: row.text("source")?,
        seq: row.int("seq")?,
        id: row.text("id")?,
        action: row.text("action")?,
        payload: row.text("payload")?,
        published_at: row.int("published_at")?,
    }
    .decode()
}

/// A `(source, number)` row, such as a source head.
pub fn decode_source_count(
    row: &impl Columns,
    column: &str,
) -> Result<(SourceName, u64), StoreError> {
    let name = row.text("source")?;
    let value = row.int(column)?;
    let source = SourceName::parse(&name).ok_or_else(|| corrupt("source", &name))?;
    let value = u64::try_from(value).map_err(|_| corrupt(column, &value.to_string()))?;
    Ok((source, value))
}

/// The reason in an `end_reason` column.
pub fn decode_end_reason(row: &impl Columns) -> Result<EndReason, StoreError> {
    let reason = row.text("end_reason")?;
    EndReason::from_name(&reason).ok_or_else(|| corrupt("end_reason", &reason))
}

/// A whole record, selected with [`record_columns`].
pub fn decode_record(row: &impl Columns) -> Result<SubscriptionRecord, StoreError> {
    let status = match row.text("status")?.as_str() {
        "active" => SubscriptionStatus::Active,
        "ended" => SubscriptionStatus::Ended {
            reason: decode_end_reason(row)?,
            at: timestamp(
                row.optional_int("ended_at")?
                    .ok_or_else(|| corrupt("ended_at", "NULL"))?,
            )?,
        },
        other => return Err(corrupt("status", other)),
    };
    let end_notice = row
        .optional_text("end_notice")?
        .map(|notice| EndNotice::from_name(&notice).ok_or_else(|| corrupt("end_notice", &notice)))
        .transpose()?;
    Ok(SubscriptionRecord {
        subscription: decode_subscription(row)?,
        status,
        progress: decode_progress(row)?,
        end_notice,
        owner: row.optional_text("owner")?,
    })
}

/// The progress columns, after [`subscription_columns`].
macro_rules! progress_columns {
    () => {
        "cursor, attempts, next_attempt_at, failing_since, last_error"
    };
}
pub(crate) use progress_columns;

/// A stored sequence number.
pub fn seq_column(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A duration as milliseconds for a column.
pub fn duration_millis(value: std::time::Duration) -> i64 {
    i64::try_from(value.as_millis()).unwrap_or(i64::MAX)
}

/// A row that came back inside one JSON value (an array per row, columns in the order of
/// [`subscription_columns`] then [`progress_columns`]), read by column name like any other.
pub struct JsonRow<'a> {
    values: &'a [Cell<'a>],
}

/// One column of a [`JsonRow`]: its text borrowed from the page unless it had escapes.
enum Cell<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Cell<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CellVisitor(std::marker::PhantomData))
    }
}

/// Reads a [`Cell`]: null, an integer or a string; anything else is refused.
struct CellVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for CellVisitor<'a> {
    type Value = Cell<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null, an integer or a string")
    }
    fn visit_unit<E>(self) -> Result<Cell<'a>, E> {
        Ok(Cell::Null)
    }
    fn visit_i64<E>(self, value: i64) -> Result<Cell<'a>, E> {
        Ok(Cell::Int(value))
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Cell<'a>, E> {
        i64::try_from(value)
            .map(Cell::Int)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Cell<'a>, E> {
        Ok(Cell::Text(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Cell<'a>, E> {
        Ok(Cell::Text(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E>(self, value: String) -> Result<Cell<'a>, E> {
        Ok(Cell::Text(Cow::Owned(value)))
    }
}

/// The columns a [`JsonRow`] holds, in order: the one column list, split.
fn json_row_columns() -> &'static [&'static str] {
    static COLUMNS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    COLUMNS.get_or_init(|| {
        concat!(subscription_columns!(), ", ", progress_columns!())
            .split(',')
            .map(str::trim)
            .collect()
    })
}

impl JsonRow<'_> {
    fn value(&self, name: &str) -> Result<&Cell<'_>, StoreError> {
        let index = json_row_columns()
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| corrupt("column", name))?;
        self.values
            .get(index)
            .ok_or_else(|| corrupt("missing column", name))
    }
}

impl Columns for JsonRow<'_> {
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.value(name)? {
            Cell::Null => Ok(None),
            Cell::Text(text) => Ok(Some(text.as_ref().to_owned())),
            Cell::Int(value) => Err(corrupt(name, &value.to_string())),
        }
    }
    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.value(name)? {
            Cell::Null => Ok(None),
            Cell::Int(value) => Ok(Some(*value)),
            Cell::Text(text) => Err(corrupt(name, text)),
        }
    }
}

/// A page of subscriptions with their progress sent as one JSON array of [`JsonRow`]s.
pub fn decode_json_page(page: &str) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError> {
    let rows: Vec<Vec<Cell<'_>>> = serde_json::from_str(page)
        .map_err(|err| StoreError::Corrupt(format!("owned page: {err}")))?;
    // Sized once: collecting into a Result would grow the vector from nothing, moving every
    // subscription decoded so far at each doubling.
    let mut page = Vec::with_capacity(rows.len());
    for values in &rows {
        let row = JsonRow { values };
        page.push((decode_subscription(&row)?, decode_progress(&row)?));
    }
    Ok(page)
}
