-- Core key/value state of the orchestrator (e.g. generated secrets).
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
