-- Push channels (seed 004). A channel's notifications are the events of its log (`ch.{token}`);
-- the row holds its lifetime, when a reader was last there, how far the device has read
-- (compaction keeps what it has not), and the unauthenticated senders' count of the day.
CREATE TABLE channels (
    token TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    last_seen BIGINT NOT NULL,
    cursor BIGINT NOT NULL DEFAULT 0,
    day BIGINT NOT NULL DEFAULT 0,
    day_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX channels_log ON channels (log);
