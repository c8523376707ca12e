-- What a WS-Management subscriber asked of delivery (mode, batching, heartbeats, bookmarks,
-- sink authentication with its password sealed), as JSON; NULL for every other reader.
ALTER TABLE subscriptions ADD COLUMN wsman TEXT;
