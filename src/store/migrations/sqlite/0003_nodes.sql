-- Nodes and ownership. The embedded store has one node, but it keeps the same model as the
-- shared store: each active subscription names the node that delivers it.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    lease_until INTEGER NOT NULL
);

ALTER TABLE subscriptions ADD COLUMN owner TEXT;

CREATE INDEX subscriptions_owner ON subscriptions (owner) WHERE status = 'active';
