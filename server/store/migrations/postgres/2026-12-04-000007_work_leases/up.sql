-- Work that must run once across the nodes (rescoring after a rule change): one lease per
-- job, held by one node until it expires, with the progress a successor resumes from.
CREATE TABLE work_leases (
    job TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires BIGINT NOT NULL,
    progress TEXT NOT NULL DEFAULT '',
    done BIGINT NOT NULL DEFAULT 0
);
