-- Push channels (seed 004). A channel's notifications are the events of its log (`ch.{token}`);
-- the row holds its lifetime, when a reader was last there, how far the device has said it
-- read (`cursor`: compaction keeps what it has not) and how far a stream has sent (`sent`), the unauthenticated senders' count of the day, and the
-- callback registration (one per channel, the last one wins) with where its firing stands:
-- 'armed' (fires when the device goes inactive), 'firing' (due at cb_next_at), 'fired',
-- 'failed' (given up).
CREATE TABLE channels (
    token TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    last_seen BIGINT NOT NULL,
    cursor BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    day BIGINT NOT NULL DEFAULT 0,
    day_count BIGINT NOT NULL DEFAULT 0,
    cb_uri TEXT,
    cb_payload BYTEA,
    cb_content_type TEXT,
    cb_registered_at BIGINT,
    cb_state TEXT,
    cb_attempts BIGINT NOT NULL DEFAULT 0,
    cb_next_at BIGINT,
    cb_failing_since BIGINT,
    cb_last_error TEXT,
    cb_fired_at BIGINT
);
CREATE INDEX channels_armed ON channels (cb_state, last_seen);
CREATE INDEX channels_firing ON channels (cb_state, cb_next_at);
CREATE INDEX channels_log ON channels (log);
