ALTER TABLE audit_events_moving RENAME TO audit_events;
