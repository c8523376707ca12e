-- Logs and readers: every callback kind is a log read by readers. A log has a kind (a
-- WS-Eventing source for everything stored before this migration) and a reader a delivery
-- (SOAP push for every subscription so far). Existing rows take those values.
ALTER TABLE subscriptions ADD COLUMN log_kind TEXT NOT NULL DEFAULT 'source';
ALTER TABLE subscriptions ADD COLUMN delivery TEXT NOT NULL DEFAULT 'soap-push';
ALTER TABLE source_heads ADD COLUMN log_kind TEXT NOT NULL DEFAULT 'source';
