-- Spend caps (limits/spend_caps.py): a limit in US dollars on what an owner may spend in a
-- UTC window (a day from midnight, a week from Monday midnight, a calendar month). An owner
-- is a kind and an id: a relay key (key, rk_...), a billing tag (tag, its name), or relay
-- as a whole (relay, ''); persons and groups come with sign-in as further kinds.
CREATE TABLE spend_caps (
    id TEXT PRIMARY KEY,                   -- cap_ and 8 hex digits
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    period TEXT NOT NULL,                  -- day, week or month
    limit_usd REAL NOT NULL,
    created_at TEXT NOT NULL,              -- ISO 8601 UTC
    UNIQUE (owner_kind, owner_id, period)
);

-- What each cap's requests have cost in one window, added when each request has ended.
CREATE TABLE spend_counters (
    cap_id TEXT NOT NULL,
    window_start REAL NOT NULL,            -- epoch seconds
    spent_usd REAL NOT NULL,
    PRIMARY KEY (cap_id, window_start)
);

-- What requests in flight may still cost: one row per request and cap, taken before the
-- request goes upstream (its estimate), removed when its cost is added to spend_counters.
-- A row older than an hour (limits.spend_caps.HOLD_SECONDS) no longer counts: an isolate
-- that died with a request in flight cannot hold a cap's headroom for ever.
CREATE TABLE spend_holds (
    id TEXT NOT NULL,                      -- the request's hold, one id for all its caps
    cap_id TEXT NOT NULL,
    window_start REAL NOT NULL,
    amount_usd REAL NOT NULL,              -- the estimate held
    created_at REAL NOT NULL,              -- epoch seconds
    spent_usd REAL NOT NULL,               -- the cap's standing when the hold was taken:
    held_usd REAL NOT NULL,                -- settled spend, and what others held
    PRIMARY KEY (id, cap_id)
);
CREATE INDEX spend_holds_by_cap ON spend_holds (cap_id, window_start, created_at);

-- Alerts sent (limits/alerts.py): one row per cap, window and threshold crossed, taken by
-- the one request whose settlement crossed it, so each is sent once whatever the isolates.
CREATE TABLE cap_alerts (
    cap_id TEXT NOT NULL,
    window_start REAL NOT NULL,
    threshold INTEGER NOT NULL,            -- percent of the limit
    sent_at TEXT NOT NULL,                 -- ISO 8601 UTC, when it was claimed
    PRIMARY KEY (cap_id, window_start, threshold)
);

-- Requests per session and UTC minute (limits/session_breaker.py), while
-- RELAY_SESSION_MAX_REQUESTS is set.
CREATE TABLE session_requests (
    session_key TEXT NOT NULL,             -- a hash of the session id
    minute INTEGER NOT NULL,               -- epoch minutes
    requests INTEGER NOT NULL,
    PRIMARY KEY (session_key, minute)
);

-- Tokens-per-minute limits (limits/token_rates.py): input and output tokens an owner
-- (a relay key; a person with sign-in) may use in a UTC minute; NULL: no limit of that kind.
CREATE TABLE token_limits (
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    input_per_minute INTEGER,
    output_per_minute INTEGER,
    PRIMARY KEY (owner_kind, owner_id)
);

-- Tokens counted per owner and UTC minute: each request's estimate when it starts, corrected
-- to what it used when it ends.
CREATE TABLE token_minutes (
    owner TEXT NOT NULL,                   -- owner_kind:owner_id
    minute INTEGER NOT NULL,               -- epoch minutes
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (owner, minute)
);
