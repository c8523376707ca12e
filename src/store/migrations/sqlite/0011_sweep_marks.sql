-- The sweeper walks a mark at or before each active subscription's expiry instead of the expiry
-- itself. A renewal that moves the expiry later leaves the mark where it is, so it changes no
-- indexed column: on SQLite the expiry index was rewritten on every Renew (6k of a Renew's 24k
-- instructions in its batch's commit, `callgrind`), and on PostgreSQL such a renewal can be a
-- heap-only update. The sweeper moves a passed mark up to the expiry of a subscription renewed
-- since (once per mark, not per renewal); a renewal that brings the expiry nearer moves the mark
-- with it.
ALTER TABLE subscriptions ADD COLUMN sweep_at INTEGER;
UPDATE subscriptions SET sweep_at = expires_at WHERE status = 'active';
DROP INDEX subscriptions_expiry;
CREATE INDEX subscriptions_sweep ON subscriptions (sweep_at)
    WHERE status = 'active' AND sweep_at IS NOT NULL;
