-- Relationships between objects (IDM's edges): one row per edge, kept out of the objects'
-- JSON. Each edge is stored once, in a canonical direction (see `relationships.rs`), so that
-- a grant made from either side meets the same unique key. `second_prop` is empty for a
-- relationship without a reverse property (a user's `authzRoles` to internal roles).
-- Both directions are one indexed lookup: by the first end through the unique index, by the
-- second end through `relationships_second`. Both lead with the id, so that a filter naming
-- only the far end's id (`roles/_refResourceId eq "x"`) finds its edges through them too.
CREATE TABLE relationships (
    pk          INTEGER PRIMARY KEY,
    rid         TEXT    NOT NULL,
    rev         BIGINT  NOT NULL,
    first_coll  TEXT    NOT NULL,
    first_id    TEXT    NOT NULL,
    first_prop  TEXT    NOT NULL,
    second_coll TEXT    NOT NULL,
    second_id   TEXT    NOT NULL,
    second_prop TEXT    NOT NULL,
    props       TEXT    NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX relationships_id ON relationships (rid);
CREATE UNIQUE INDEX relationships_edge
    ON relationships (first_id, first_coll, first_prop, second_id, second_coll, second_prop);
CREATE INDEX relationships_second ON relationships (second_id, second_coll, second_prop);
