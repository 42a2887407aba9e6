-- The index rows' foreign keys go: every statement that writes index rows either inserts the
-- object in the same statement or has locked the object's row first, and a delete removes the
-- object's index rows itself. Checking the keys cost PostgreSQL a locking lookup of the object
-- per index row (13 per created user, 15 % of its work on a create).
ALTER TABLE object_props DROP CONSTRAINT object_props_obj_pk_fkey;
ALTER TABLE unique_values DROP CONSTRAINT unique_values_obj_pk_fkey;
