DROP TABLE session_epochs;
DROP TABLE rate_counters;
DROP TABLE selfservice_flows;
