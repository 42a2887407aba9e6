DROP INDEX object_props_long;
UPDATE object_props SET str = full_str WHERE full_str IS NOT NULL;
ALTER TABLE object_props DROP COLUMN full_str;
