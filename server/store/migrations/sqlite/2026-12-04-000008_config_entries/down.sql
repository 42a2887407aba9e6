DROP TABLE config_entries;
