//! A new subscription as one value of the composite type `subscription_insert` (migration 12),
//! so that a batch of them is bound as one array of rows: the server unnests one array instead
//! of one per column (BENCHMARKS.md, twenty-ninth pass).

use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, Postgres};

use super::super::subscription_writes::NewSubscription;

/// One row of an insert batch, borrowed from its write.
pub(super) struct InsertRow<'a>(pub &'a NewSubscription);

impl sqlx::Type<Postgres> for InsertRow<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("subscription_insert")
    }
}

impl PgHasArrayType for InsertRow<'_> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_subscription_insert")
    }
}

/// The fields of `subscription_insert`.
const FIELDS: i32 = 22;
/// PostgreSQL's `text`.
const TEXT: u32 = 25;
/// PostgreSQL's `bigint`.
const BIGINT: u32 = 20;

impl Encode<'_, Postgres> for InsertRow<'_> {
    /// PostgreSQL's binary form of a record (`record_recv`): the number of fields, then each
    /// field's type, its length in bytes (-1 for NULL) and its bytes, in the type's order, which
    /// is the INSERT's. Written directly: sqlx's record encoder spent about 190 instructions a
    /// field resolving each field's type.
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let NewSubscription {
            row,
            owner,
            start_after,
        } = self.0;
        let mut record = Record(buf);
        record.0.extend_from_slice(&FIELDS.to_be_bytes());
        record.text(Some(&row.id))?;
        record.text(Some(&row.source))?;
        record.text(Some(&row.eventing))?;
        record.text(Some(&row.soap))?;
        record.text(Some(&row.addressing))?;
        record.text(Some(&row.notify_to))?;
        record.text(row.end_to.as_deref())?;
        record.text(Some(&row.delivery_mode))?;
        record.text(Some(&row.format))?;
        record.text(row.filter.as_deref())?;
        record.bigint(row.expires_at);
        record.text(Some(&row.expiry_kind))?;
        record.bigint(Some(row.created_at));
        record.text(Some(&row.manager_address))?;
        record.text(Some(&row.log_kind))?;
        record.text(Some(&row.delivery))?;
        record.text(row.webhook.as_deref())?;
        record.bigint(row.retry_interval_ms);
        record.bigint(row.retry_total);
        record.text(row.wsman.as_deref())?;
        record.text(Some(owner))?;
        record.bigint(*start_after);
        Ok(IsNull::No)
    }
}

/// A record being written into an argument buffer.
struct Record<'b>(&'b mut PgArgumentBuffer);

impl Record<'_> {
    /// A `text` field: its bytes are its UTF-8.
    fn text(&mut self, value: Option<&str>) -> Result<(), BoxDynError> {
        let buf = &mut **self.0;
        buf.extend_from_slice(&TEXT.to_be_bytes());
        match value {
            None => buf.extend_from_slice(&(-1_i32).to_be_bytes()),
            Some(text) => {
                let length = i32::try_from(text.len())
                    .map_err(|_| format!("a text field of {} bytes is too long", text.len()))?;
                buf.extend_from_slice(&length.to_be_bytes());
                buf.extend_from_slice(text.as_bytes());
            }
        }
        Ok(())
    }

    /// A `bigint` field: eight bytes, big-endian.
    fn bigint(&mut self, value: Option<i64>) {
        let buf = &mut **self.0;
        buf.extend_from_slice(&BIGINT.to_be_bytes());
        match value {
            None => buf.extend_from_slice(&(-1_i32).to_be_bytes()),
            Some(number) => {
                buf.extend_from_slice(&8_i32.to_be_bytes());
                buf.extend_from_slice(&number.to_be_bytes());
            }
        }
    }
}
