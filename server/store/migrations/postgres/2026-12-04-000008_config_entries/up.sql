-- Configuration changes made over REST, for every node of the database: the latest content of
-- each changed config id (NULL once removed) and the version that change was given.
CREATE TABLE config_entries (
    id TEXT PRIMARY KEY,
    content TEXT,
    version BIGINT NOT NULL
);
