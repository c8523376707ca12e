-- Subscriptions. Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY,
    source        TEXT NOT NULL,
    eventing      TEXT NOT NULL,
    soap          TEXT NOT NULL,
    addressing    TEXT NOT NULL,
    notify_to     TEXT NOT NULL,
    end_to        TEXT,
    delivery_mode TEXT NOT NULL,
    format        TEXT NOT NULL,
    filter        TEXT,
    expires_at    INTEGER,
    expiry_kind   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    end_reason    TEXT,
    ended_at      INTEGER
);

-- The sweeper walks this index from its start: cost proportional to what has expired.
CREATE INDEX subscriptions_expiry ON subscriptions (expires_at)
    WHERE status = 'active' AND expires_at IS NOT NULL;
