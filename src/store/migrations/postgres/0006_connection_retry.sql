-- WS-Management wsman:ConnectionRetry: the subscriber's own retry schedule (interval and number
-- of retries), NULL for every other reader.
ALTER TABLE subscriptions ADD COLUMN retry_interval_ms BIGINT;
ALTER TABLE subscriptions ADD COLUMN retry_total BIGINT;
