//! The JSON API's listing of subscriptions as PostgreSQL plans it: a page reads the
//! identifier's index from where the last page ended, whatever values it is bound with.

use herald::domain::subscription::{SourceName, SubscriptionId};
use herald::store::webhooks::{Bound, Dialect, LISTING_PLAN, Listing, list_statement};
use sqlx::{Connection, Row};

use crate::harness::*;

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_page_starts_where_the_last_ended_on_postgres() {
    let store = TestStore::new().await;
    let url = store
        .database_url()
        .unwrap_or_else(|| panic!("this test needs PostgreSQL: set {DATABASE_VARIABLE}"))
        .to_owned();
    let _migrated = store.open().await;
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    // The plan a prepared statement settles on after its first runs, for any value, with the
    // settings the store reads a page under, on a table never analyzed.
    sqlx::raw_sql("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::raw_sql(LISTING_PLAN)
        .execute(&mut connection)
        .await
        .unwrap();
    let listing = Listing {
        source: SourceName::parse("default"),
        active: Some(true),
        deliveries: vec!["webhook"],
        after: Some(SubscriptionId::new_random()),
        limit: 500,
    };
    let (sql, values) = list_statement(&listing, Dialect::Postgres);
    let types = values
        .iter()
        .map(|value| match value {
            Bound::Text(_) => "text",
            Bound::Count(_) => "bigint",
        })
        .collect::<Vec<_>>()
        .join(", ");
    let arguments = values
        .iter()
        .map(|value| match value {
            Bound::Text(text) => format!("'{text}'"),
            Bound::Count(count) => count.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE page ({types}) AS {sql}"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    let plan = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN EXECUTE page ({arguments})"
    )))
    .fetch_all(&mut connection)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect::<Vec<_>>()
    .join("\n");
    assert!(plan.contains("Index Cond: (id > $"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}
