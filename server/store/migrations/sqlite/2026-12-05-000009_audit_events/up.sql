-- Audit events the repository handler keeps: one row per event with the event as JSON text, and
-- the fields audit queries filter and sort on as columns, folded like the property index
-- (lower-cased), so storing an event writes one row instead of one index row per field.
-- `object_id` is `principal` (its one element) for authentication events, `operation` is
-- `request/operation` for access events, `status` is `response/status` for access and
-- `result` for authentication events.
CREATE TABLE audit_events (
    pk             INTEGER PRIMARY KEY,
    topic          TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_ts       TEXT,
    event_name     TEXT,
    transaction_id TEXT,
    user_id        TEXT,
    object_id      TEXT,
    operation      TEXT,
    status         TEXT,
    body           TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_events_id ON audit_events (topic, event_id);
CREATE INDEX audit_events_ts ON audit_events (topic, event_ts);
CREATE INDEX audit_events_transaction ON audit_events (topic, transaction_id);
CREATE INDEX audit_events_user ON audit_events (topic, user_id);
CREATE INDEX audit_events_object ON audit_events (topic, object_id) WHERE object_id IS NOT NULL;

-- Events stored earlier as objects of type `audit/<topic>` move here.
INSERT INTO audit_events
    (topic, event_id, event_ts, event_name, transaction_id, user_id, object_id, operation, status, body)
SELECT substr(otype, 7), oid,
    lower(json_extract(content, '$.timestamp')),
    lower(json_extract(content, '$.eventName')),
    lower(json_extract(content, '$.transactionId')),
    lower(json_extract(content, '$.userId')),
    lower(CASE otype
        WHEN 'audit/access' THEN NULL
        WHEN 'audit/authentication' THEN json_extract(content, '$.principal[0]')
        ELSE json_extract(content, '$.objectId') END),
    lower(CASE otype
        WHEN 'audit/access' THEN json_extract(content, '$.request.operation')
        WHEN 'audit/authentication' THEN NULL
        ELSE json_extract(content, '$.operation') END),
    lower(CASE otype
        WHEN 'audit/access' THEN json_extract(content, '$.response.status')
        WHEN 'audit/authentication' THEN json_extract(content, '$.result')
        ELSE json_extract(content, '$.status') END),
    content
FROM objects WHERE otype LIKE 'audit/%' ORDER BY pk;
DELETE FROM object_props WHERE otype LIKE 'audit/%';
DELETE FROM unique_values WHERE otype LIKE 'audit/%';
DELETE FROM objects WHERE otype LIKE 'audit/%';
