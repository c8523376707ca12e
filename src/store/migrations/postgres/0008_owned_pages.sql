-- A start reads what a node owns a page at a time, in id order after the last page: this index
-- serves the filter and the order, so each page costs its own rows rather than a scan and sort
-- of everything the node owns (herald-bench scenario 5 with 1,000,000 subscriptions).
CREATE INDEX subscriptions_owner_id ON subscriptions (owner, id) WHERE status = 'active';
