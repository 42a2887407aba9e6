DROP TABLE login_failures;
DROP TABLE unique_values;
DROP TABLE object_props;
DROP TABLE objects;
