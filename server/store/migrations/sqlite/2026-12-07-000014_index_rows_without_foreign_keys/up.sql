-- PostgreSQL drops the index rows' foreign keys here (a locking lookup of the object per index
-- row). SQLite keeps them: its check is one lookup by row id within the writer's own
-- transaction, with no measurable cost on a create, and dropping a key would mean copying the
-- whole index table.
SELECT 1;
