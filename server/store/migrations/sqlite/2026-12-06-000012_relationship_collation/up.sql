-- SQLite compares the relationship ends byte-wise already (its BINARY collation); the
-- PostgreSQL migration of the same name makes that backend do the same.
SELECT 1;
