-- The times (milliseconds, comma-separated) of a principal's most recent failed logins, so a
-- lock is triggered by any N failures within the window, not per fixed window.
ALTER TABLE login_failures ADD COLUMN recent TEXT NOT NULL DEFAULT '';
