-- The audit log: one row per API request relay answered (routes under /v1/ and /openai/v1/),
-- including those relay refused itself (401/403/429). Written after the response, off the
-- client's path. Key ids, never keys; costs in US dollars, NULL when the model's price is unknown.
CREATE TABLE usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,              -- ISO 8601 UTC, when the request arrived
    day TEXT NOT NULL,                     -- its UTC date (YYYY-MM-DD), for reports by day
    key_id TEXT,                           -- relay key id (rk_..., static-...); NULL when none was valid
    billing_tag TEXT,
    session_id TEXT,
    client TEXT,                           -- user-agent family, e.g. claude-cli, Anthropic/Python
    surface TEXT NOT NULL,                 -- the API the client spoke: anthropic or openai
    provider TEXT,                         -- who served it
    upstream_key_id TEXT,                  -- short id of the upstream key, never the key
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    model_requested TEXT,
    model_served TEXT,
    stream INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,               -- the HTTP status the client got
    error_type TEXT,                       -- provider or relay error type; also a mid-stream error,
                                           -- client_disconnected, upstream_disconnected
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_creation_tokens INTEGER,         -- all cache writes (5 minute and 1 hour)
    cache_creation_1h_tokens INTEGER,      -- of which 1 hour writes
    cache_read_tokens INTEGER,
    cache_markers_added INTEGER NOT NULL DEFAULT 0,  -- cache_control breakpoints relay inserted
    ttfb_ms INTEGER,                       -- request arrival to the first body byte, as the Worker saw it
    total_ms INTEGER,                      -- request arrival to the last body byte
    cost_usd REAL,
    cache_savings_usd REAL                 -- what cache reads saved, less the cache-write premium
);
CREATE INDEX usage_by_time ON usage (created_at);
CREATE INDEX usage_by_key_time ON usage (key_id, created_at);
