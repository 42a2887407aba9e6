-- The nodes serving this database: each registers at start, beats while it runs (with the
-- configuration generation it serves) and records its shutdown; times in milliseconds.
CREATE TABLE cluster_nodes (
    instance_id TEXT PRIMARY KEY,
    startup BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL,
    shutdown BIGINT NOT NULL DEFAULT 0,
    generation BIGINT NOT NULL DEFAULT 0
);
