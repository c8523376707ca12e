-- herald on PostgreSQL: the same model as the embedded store. Timestamps are milliseconds since
-- the Unix epoch (UTC), as BIGINT.
CREATE TABLE subscriptions (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    eventing        TEXT NOT NULL,
    soap            TEXT NOT NULL,
    addressing      TEXT NOT NULL,
    notify_to       TEXT NOT NULL,
    end_to          TEXT,
    delivery_mode   TEXT NOT NULL,
    format          TEXT NOT NULL,
    filter          TEXT,
    expires_at      BIGINT,
    expiry_kind     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    manager_address TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    end_reason      TEXT,
    ended_at        BIGINT,
    -- The node that delivers it; an orphan when NULL or when that node's lease has lapsed.
    owner           TEXT,
    -- Delivery progress: the last sequence number handled, and the current retry.
    cursor          BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    failing_since   BIGINT,
    last_error      TEXT,
    -- SubscriptionEnd outbox: 'pending', then 'sent', 'failed' or 'skipped'.
    end_notice      TEXT,
    end_attempts    BIGINT NOT NULL DEFAULT 0,
    end_next_at     BIGINT,
    end_error       TEXT
);

-- The sweeper walks this index from its start: cost proportional to what has expired.
CREATE INDEX subscriptions_expiry ON subscriptions (expires_at)
    WHERE status = 'active' AND expires_at IS NOT NULL;
CREATE INDEX subscriptions_end_notice ON subscriptions (end_next_at) WHERE end_notice = 'pending';
CREATE INDEX subscriptions_owner ON subscriptions (owner) WHERE status = 'active';
CREATE INDEX subscriptions_active_source ON subscriptions (source, cursor) WHERE status = 'active';

-- Per-source sequence counter: its row is locked by the append transaction, so sequence numbers
-- are handed out in commit order and a reader can never skip an event that commits later.
CREATE TABLE source_heads (
    source   TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

-- The event log: one row per event, whatever the number of subscribers.
CREATE TABLE events (
    source       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    id           TEXT NOT NULL,
    action       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (source, seq)
);

-- herald nodes sharing this database, each with a lease renewed while it lives.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    lease_until BIGINT NOT NULL
);
