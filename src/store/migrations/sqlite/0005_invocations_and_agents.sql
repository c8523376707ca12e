-- Invocation callbacks (seed 002). An invocation is a raised invoker event and the calls made
-- for it; its callback event (or its error) is appended to an agent's log, and an agent with
-- pull listeners keeps one queue entry per message until a listener acknowledges it.
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    invoker TEXT NOT NULL,
    event_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    parameters TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    resumed INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER,
    failing_since INTEGER,
    last_error TEXT,
    response TEXT,
    agent TEXT,
    agent_seq INTEGER,
    finished_at INTEGER,
    owner TEXT
);
CREATE INDEX invocations_due ON invocations (invoker, state, next_at);
CREATE INDEX invocations_by_key ON invocations (invoker, event_key, state);
-- At most one call in flight per key, whatever the nodes do: a second running invocation of a
-- key cannot be written.
CREATE UNIQUE INDEX invocations_running_key ON invocations (invoker, event_key)
    WHERE state = 'running';

-- The latest invocation per (invoker, key): a raise within the idempotency window names it.
CREATE TABLE invocation_keys (
    invoker TEXT NOT NULL,
    event_key TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    PRIMARY KEY (invoker, event_key)
);

-- Messages of an agent not yet acknowledged by a pull listener; the message itself is the
-- event at (agent, seq) in the events table, kept there while its entry exists.
CREATE TABLE agent_queue (
    agent TEXT NOT NULL,
    seq INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receipt TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, seq)
);
CREATE INDEX agent_queue_visible ON agent_queue (agent, visible_at);
CREATE INDEX agent_queue_correlation ON agent_queue (agent, correlation_id, seq);
