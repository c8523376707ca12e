-- Push channels (seed 004). A channel's notifications are the events of its log (`ch.{token}`);
-- the row holds its lifetime, when a reader was last there, how far the device has said it
-- read (`cursor`: compaction keeps what it has not) and how far a stream has sent (`sent`), the unauthenticated senders' count of the day, and the
-- callback registration (one per channel, the last one wins) with where its firing stands:
-- 'armed' (fires when the device goes inactive), 'firing' (due at cb_next_at), 'fired',
-- 'failed' (given up).
CREATE TABLE channels (
    token TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    closed_at INTEGER,
    last_seen INTEGER NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    day INTEGER NOT NULL DEFAULT 0,
    day_count INTEGER NOT NULL DEFAULT 0,
    cb_uri TEXT,
    cb_payload BLOB,
    cb_content_type TEXT,
    cb_registered_at INTEGER,
    cb_state TEXT,
    cb_attempts INTEGER NOT NULL DEFAULT 0,
    cb_next_at INTEGER,
    cb_failing_since INTEGER,
    cb_last_error TEXT,
    cb_fired_at INTEGER
);
CREATE INDEX channels_armed ON channels (cb_state, last_seen);
CREATE INDEX channels_firing ON channels (cb_state, cb_next_at);
CREATE INDEX channels_log ON channels (log);
