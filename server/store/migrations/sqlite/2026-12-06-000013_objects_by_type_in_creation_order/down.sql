DROP INDEX objects_type_pk;
