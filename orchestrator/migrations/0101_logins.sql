-- Logged-in identities, server side: the session cookie holds only the login id, so
-- group lists never bloat the cookie and logout ends a login for good.
CREATE TABLE logins (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX logins_expires ON logins (expires_at);
