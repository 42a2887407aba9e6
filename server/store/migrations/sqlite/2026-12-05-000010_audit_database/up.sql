-- SQLite keeps the audit trail in its own file beside the database (`<name>-audit.db`), so its
-- steady appends stay out of this file's WAL, checkpoints and page caches. The table moves
-- aside here; the store copies its rows into the audit file and drops it after the migrations.
ALTER TABLE audit_events RENAME TO audit_events_moving;
