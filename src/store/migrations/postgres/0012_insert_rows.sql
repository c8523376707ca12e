-- A batch of new subscriptions arrives as one array of these rows, in the INSERT's column order.
-- As 22 arrays, one per column, the server unnested each into a store of its own and joined them
-- back into rows: 14 µs a row against 8 µs for one array of rows (a PL/pgSQL loop of 3,000
-- batches of 32 inserts into this schema, BENCHMARKS.md, twenty-ninth pass).
CREATE TYPE subscription_insert AS (
    id                TEXT,
    source            TEXT,
    eventing          TEXT,
    soap              TEXT,
    addressing        TEXT,
    notify_to         TEXT,
    end_to            TEXT,
    delivery_mode     TEXT,
    format            TEXT,
    filter            TEXT,
    expires_at        BIGINT,
    expiry_kind       TEXT,
    created_at        BIGINT,
    manager_address   TEXT,
    log_kind          TEXT,
    delivery          TEXT,
    webhook           TEXT,
    retry_interval_ms BIGINT,
    retry_total       BIGINT,
    wsman             TEXT,
    owner             TEXT,
    start_after       BIGINT
);
