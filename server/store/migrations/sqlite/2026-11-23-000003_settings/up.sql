-- Values the server records about the database itself, shared by every node on it (for
-- example which profile-completeness rule the stored scores were computed with).
CREATE TABLE store_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
