-- Virtual relay keys. Only a SHA-256 hash of each key is stored; the key itself is shown
-- once, at creation. `id` is the short public id used in logs, usage rows and the admin API.
CREATE TABLE relay_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    billing_tag TEXT,
    allowed_models TEXT NOT NULL DEFAULT '[]',  -- JSON array of model globs; empty = all
    rpm_limit INTEGER,                          -- requests per minute; NULL = relay default
    max_concurrent_streams INTEGER,             -- NULL = unlimited
    monthly_budget_usd REAL,                    -- NULL = no budget
    created_at TEXT NOT NULL,                   -- ISO 8601 UTC
    expires_at TEXT,
    revoked_at TEXT
);
