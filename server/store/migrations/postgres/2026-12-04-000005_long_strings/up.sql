-- Bounded index keys (see the SQLite migration): str holds at most 257 characters, full_str
-- the whole of a longer string.
ALTER TABLE object_props ADD COLUMN full_str TEXT COLLATE "C";
UPDATE object_props SET full_str = str, str = substr(str, 1, 257) WHERE length(str) > 256;
CREATE INDEX object_props_long ON object_props (otype, prop, obj_pk) WHERE full_str IS NOT NULL;
