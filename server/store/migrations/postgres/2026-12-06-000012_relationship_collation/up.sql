-- Relationship ends compare byte-wise, as on SQLite and as the property index's strings do, so
-- that range filters over references (`roles/_refResourceId gt "m"`) answer alike on both
-- backends.
ALTER TABLE relationships
    ALTER COLUMN first_coll TYPE TEXT COLLATE "C",
    ALTER COLUMN first_id TYPE TEXT COLLATE "C",
    ALTER COLUMN second_coll TYPE TEXT COLLATE "C",
    ALTER COLUMN second_id TYPE TEXT COLLATE "C";
