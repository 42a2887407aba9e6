-- Self-service process flows: the step a flow's one valid token carries. A token is claimed
-- by moving the step on, so each works once, on every node; rows go once they expire.
CREATE TABLE selfservice_flows (
    flow TEXT PRIMARY KEY,
    step BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX selfservice_flows_expires ON selfservice_flows (expires);

-- Fixed-window request counters (self-service rate limits) shared by every node.
CREATE TABLE rate_counters (
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
);

-- Each account's session epoch: a session records the epoch it started in and stops working
-- once the epoch moves (password change, deactivation, deletion, logout).
CREATE TABLE session_epochs (
    principal TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
