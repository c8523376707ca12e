-- Per-source sequence counter: bumped inside the append transaction, so sequence numbers are
-- handed out in commit order and a reader can never skip an event that commits later.
CREATE TABLE source_heads (
    source   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

-- The event log: one row per event, whatever the number of subscribers.
CREATE TABLE events (
    source       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    action       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (source, seq)
);

-- Delivery progress of each subscription: the last sequence number handled (delivered or
-- filtered out), and the state of the current retry.
ALTER TABLE subscriptions ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE subscriptions ADD COLUMN failing_since INTEGER;
ALTER TABLE subscriptions ADD COLUMN last_error TEXT;

-- The subscription manager address given in the SubscribeResponse (2004/08 SubscriptionEnd
-- carries it).
ALTER TABLE subscriptions ADD COLUMN manager_address TEXT NOT NULL DEFAULT '';

-- SubscriptionEnd outbox: 'pending' when the subscription ended and has an EndTo; then 'sent',
-- 'failed' (gave up) or 'skipped' (the version sends none for this reason).
ALTER TABLE subscriptions ADD COLUMN end_notice TEXT;
ALTER TABLE subscriptions ADD COLUMN end_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN end_next_at INTEGER;
ALTER TABLE subscriptions ADD COLUMN end_error TEXT;

CREATE INDEX subscriptions_end_notice ON subscriptions (end_next_at) WHERE end_notice = 'pending';
CREATE INDEX subscriptions_active_source ON subscriptions (source) WHERE status = 'active';
