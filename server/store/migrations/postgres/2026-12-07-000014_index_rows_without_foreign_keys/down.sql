ALTER TABLE object_props ADD CONSTRAINT object_props_obj_pk_fkey
    FOREIGN KEY (obj_pk) REFERENCES objects (pk) ON DELETE CASCADE;
ALTER TABLE unique_values ADD CONSTRAINT unique_values_obj_pk_fkey
    FOREIGN KEY (obj_pk) REFERENCES objects (pk) ON DELETE CASCADE;
