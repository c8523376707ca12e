-- A herald PostgreSQL database as herald wrote it on 2 Dec 2026, before logs and readers
-- (schema version 1): pg_dump --inserts of a database where a W3C 2011 subscription (no
-- expiry) and a 2004/08 subscription (XPath filter, EndTo, a reference parameter, expiring in
-- 2199) were made, three events published, and deliveries to 127.0.0.1:9 failed once; node
-- "fixture" then stopped. Schema-qualified names and session settings removed, so that it
-- loads into any schema. tests/it/upgrade.rs starts herald on it.
CREATE TABLE events (
    source text NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL,
    action text NOT NULL,
    payload text NOT NULL,
    published_at bigint NOT NULL
);
CREATE TABLE nodes (
    id text NOT NULL,
    lease_until bigint NOT NULL
);
CREATE TABLE schema_migrations (
    version bigint NOT NULL,
    applied_at bigint NOT NULL
);
CREATE TABLE source_heads (
    source text NOT NULL,
    last_seq bigint NOT NULL
);
CREATE TABLE subscriptions (
    id text NOT NULL,
    source text NOT NULL,
    eventing text NOT NULL,
    soap text NOT NULL,
    addressing text NOT NULL,
    notify_to text NOT NULL,
    end_to text,
    delivery_mode text NOT NULL,
    format text NOT NULL,
    filter text,
    expires_at bigint,
    expiry_kind text NOT NULL,
    created_at bigint NOT NULL,
    manager_address text DEFAULT ''::text NOT NULL,
    status text NOT NULL,
    end_reason text,
    ended_at bigint,
    owner text,
    cursor bigint DEFAULT 0 NOT NULL,
    attempts bigint DEFAULT 0 NOT NULL,
    next_attempt_at bigint,
    failing_since bigint,
    last_error text,
    end_notice text,
    end_attempts bigint DEFAULT 0 NOT NULL,
    end_next_at bigint,
    end_error text
);
INSERT INTO events VALUES ('default', 1, 'uuid:01a235f3-a504-765b-8fdb-814254723154', 'urn:o/created', '<o:order xmlns:o="urn:o" total="50"/>', 1796201489667);
INSERT INTO events VALUES ('default', 2, 'uuid:01a235f3-a50f-7042-9089-b82a59e0ca46', 'urn:o/created', '<o:order xmlns:o="urn:o" total="150"/>', 1796201489678);
INSERT INTO events VALUES ('default', 3, 'uuid:01a235f3-a51a-73d2-b603-64d30c637f43', 'urn:o/created', '<o:order xmlns:o="urn:o" total="250"/>', 1796201489690);
INSERT INTO nodes VALUES ('fixture', 0);
INSERT INTO schema_migrations VALUES (1, 1796201489547);
INSERT INTO source_heads VALUES ('default', 3);
INSERT INTO subscriptions VALUES ('6e62ec3b-e3e1-4fff-b204-4a2fb402298e', 'default', '2011', '1.2', '2005/08', '{"address":"http://127.0.0.1:9/fixture/w2011"}', NULL, 'http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push', 'unwrap', NULL, NULL, 'duration', 1796201489645, 'http://127.0.0.1:38283/eventing/default/subscriptions', 'active', NULL, NULL, 'fixture', 0, 1, 1796201494794, 1796201489670, 'connection refused', NULL, 0, NULL, NULL);
INSERT INTO subscriptions VALUES ('fd036b17-de2e-48b5-95d1-8ea604d64846', 'default', '2004/08', '1.2', '2004/08', '{"address":"http://127.0.0.1:9/fixture/w2004","reference_parameters":["<f:Ref xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:wse=\"http://schemas.xmlsoap.org/ws/2004/08/eventing\" xmlns:f=\"urn:fixture\">1</f:Ref>"]}', '{"address":"http://127.0.0.1:9/fixture/end"}', 'http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push', 'unwrap', '{"dialect":"http://www.w3.org/TR/1999/REC-xpath-19991116","expression":"//o:order[@total > 100]","namespaces":[["o","urn:o"],["s","http://www.w3.org/2003/05/soap-envelope"],["wsa","http://schemas.xmlsoap.org/ws/2004/08/addressing"],["wse","http://schemas.xmlsoap.org/ws/2004/08/eventing"]]}', 7226582400000, 'datetime', 1796201489656, 'http://127.0.0.1:38283/eventing/default/subscriptions', 'active', NULL, NULL, 'fixture', 1, 1, 1796201494722, 1796201489682, 'connection refused', NULL, 0, NULL, NULL);
ALTER TABLE ONLY events
    ADD CONSTRAINT events_pkey PRIMARY KEY (source, seq);
ALTER TABLE ONLY nodes
    ADD CONSTRAINT nodes_pkey PRIMARY KEY (id);
ALTER TABLE ONLY schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY source_heads
    ADD CONSTRAINT source_heads_pkey PRIMARY KEY (source);
ALTER TABLE ONLY subscriptions
    ADD CONSTRAINT subscriptions_pkey PRIMARY KEY (id);
CREATE INDEX subscriptions_active_source ON subscriptions USING btree (source, cursor) WHERE (status = 'active'::text);
CREATE INDEX subscriptions_end_notice ON subscriptions USING btree (end_next_at) WHERE (end_notice = 'pending'::text);
CREATE INDEX subscriptions_expiry ON subscriptions USING btree (expires_at) WHERE ((status = 'active'::text) AND (expires_at IS NOT NULL));
CREATE INDEX subscriptions_owner ON subscriptions USING btree (owner) WHERE (status = 'active'::text);
