-- Bounded index keys: a string of more than 256 characters is keyed by its first 257 (str) and
-- kept whole beside the key (full_str, NULL for every other row), so every row fits a B-tree
-- entry while comparisons stay exact. Long unique values are re-keyed by the server after
-- this migration (their key ends in a SHA-256 digest of the whole value).
ALTER TABLE object_props ADD COLUMN full_str TEXT;
UPDATE object_props SET full_str = str, str = substr(str, 1, 257) WHERE length(str) > 256;
CREATE INDEX object_props_long ON object_props (otype, prop, obj_pk) WHERE full_str IS NOT NULL;
