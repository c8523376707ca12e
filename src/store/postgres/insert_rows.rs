//! A new subscription as one value of the composite type `subscription_insert` (migration 12),
//! so that a batch of them is bound as one array of rows: the server unnests one array instead
//! of one per column (BENCHMARKS.md, twenty-ninth pass).

use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::postgres::types::PgRecordEncoder;
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

impl Encode<'_, Postgres> for InsertRow<'_> {
    /// The fields in the type's order, which is the INSERT's.
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let NewSubscription {
            row,
            owner,
            start_after,
        } = self.0;
        let mut record = PgRecordEncoder::new(buf);
        record
            .encode(&*row.id)?
            .encode(&*row.source)?
            .encode(&*row.eventing)?
            .encode(&*row.soap)?
            .encode(&*row.addressing)?
            .encode(&*row.notify_to)?
            .encode(row.end_to.as_deref())?
            .encode(&*row.delivery_mode)?
            .encode(&*row.format)?
            .encode(row.filter.as_deref())?
            .encode(row.expires_at)?
            .encode(&*row.expiry_kind)?
            .encode(row.created_at)?
            .encode(&*row.manager_address)?
            .encode(&*row.log_kind)?
            .encode(&*row.delivery)?
            .encode(row.webhook.as_deref())?
            .encode(row.retry_interval_ms)?
            .encode(row.retry_total)?
            .encode(row.wsman.as_deref())?
            .encode(&**owner)?
            .encode(*start_after)?;
        record.finish();
        Ok(IsNull::No)
    }
}
