-- SQLite moves its audit trail into a file of its own; PostgreSQL keeps `audit_events` here.
SELECT 1;
