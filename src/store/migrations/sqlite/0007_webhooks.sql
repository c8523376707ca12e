-- Webhook subscriptions: a reader's signing secrets (JSON: the current one first, then a
-- rotated-out one with the time it stops signing), NULL for every other reader.
ALTER TABLE subscriptions ADD COLUMN webhook TEXT;
