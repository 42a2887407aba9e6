-- Managed objects: one row per object; JSON content as TEXT.
CREATE TABLE objects (
    pk          INTEGER PRIMARY KEY,
    otype       TEXT    NOT NULL,
    oid         TEXT    NOT NULL,
    rev         BIGINT  NOT NULL,
    content     TEXT    NOT NULL,
    meta        TEXT    NOT NULL DEFAULT '{}',
    login_count BIGINT  NOT NULL DEFAULT 0,
    meta_rev    BIGINT  NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX objects_type_id ON objects (otype, oid);

-- The property index: one row per value reachable by a JSON pointer (array elements twice:
-- under the array's pointer for element-wise matching and under their positional pointer).
-- kind: 0 null, 1 boolean, 2 number, 3 string, 4 object, 5 array. num holds numbers and
-- booleans (0/1), str lower-cased strings; the unused one is 0 or ''. sorted marks the one row
-- per (object, pointer) that sorting uses (the value, or an array's smallest element).
CREATE TABLE object_props (
    obj_pk  BIGINT   NOT NULL REFERENCES objects (pk) ON DELETE CASCADE,
    otype   TEXT     NOT NULL,
    prop    TEXT     NOT NULL,
    kind    SMALLINT NOT NULL,
    num     DOUBLE   NOT NULL,
    str     TEXT     NOT NULL,
    sorted  SMALLINT NOT NULL
);
CREATE INDEX object_props_lookup ON object_props (otype, prop, kind, num, str, obj_pk);
CREATE INDEX object_props_object ON object_props (obj_pk, prop);

-- Values of properties that must be unique per type (lower-cased), so that concurrent writers
-- cannot both store the same value.
CREATE TABLE unique_values (
    otype   TEXT   NOT NULL,
    prop    TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    obj_pk  BIGINT NOT NULL REFERENCES objects (pk) ON DELETE CASCADE,
    PRIMARY KEY (otype, prop, value)
);
CREATE INDEX unique_values_object ON unique_values (obj_pk);

-- Failed-login bookkeeping shared by every node: failures in the current window and the lock.
CREATE TABLE login_failures (
    principal     TEXT   NOT NULL PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL
);
