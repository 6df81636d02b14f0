-- Sign-in with the company's identity provider (src/relay/identity/people.py). Codes and
-- tokens relay hands out are stored only as keyed hashes (HMAC-SHA256 under a key derived
-- from RELAY_SESSION_SECRET); the IdP's refresh token only sealed under another.
CREATE TABLE people (
    id TEXT PRIMARY KEY,                -- p_<8 hex>: the short public id in usage rows and the admin API
    subject TEXT NOT NULL UNIQUE,       -- "<issuer> <sub>" as the IdP's ID token names the person
    email TEXT,
    name TEXT,
    groups TEXT NOT NULL DEFAULT '[]',  -- JSON array, as of the last sign-in or refresh
    created_at TEXT NOT NULL,           -- ISO 8601 UTC
    seen_at TEXT NOT NULL               -- last sign-in or refresh
);
-- RFC 8628 device authorizations, from the device code's issue to its one exchange.
CREATE TABLE device_grants (
    device_hash TEXT PRIMARY KEY,
    user_code_hash TEXT NOT NULL UNIQUE,
    expires_at REAL NOT NULL,           -- epoch seconds
    interval_seconds INTEGER NOT NULL,  -- grows by 5 at each slow_down
    polled_at REAL,
    status TEXT NOT NULL DEFAULT 'pending',  -- pending, approved or denied
    person_id TEXT,
    idp_refresh TEXT                    -- sealed
);
-- A browser's trip to the IdP and back: the `state` it carries, bound to that browser.
CREATE TABLE signin_trips (
    state_hash TEXT PRIMARY KEY,
    device_hash TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    expires_at REAL NOT NULL
);
-- A signed-in Claude Code: its rotating refresh token; access tokens name the session.
CREATE TABLE gateway_sessions (
    id TEXT PRIMARY KEY,                -- s_<16 hex>
    person_id TEXT NOT NULL REFERENCES people (id),
    refresh_hash TEXT NOT NULL UNIQUE,
    previous_refresh_hash TEXT,         -- the one it replaced: presented again, it ends the session
    idp_refresh TEXT,                   -- sealed; NULL when the IdP gave none
    created_at TEXT NOT NULL,
    refreshed_at TEXT,
    expires_at REAL NOT NULL,           -- epoch seconds: sign in again after it
    revoked_at TEXT
);
CREATE INDEX gateway_sessions_by_person ON gateway_sessions (person_id);
CREATE INDEX gateway_sessions_by_previous_refresh ON gateway_sessions (previous_refresh_hash);
-- Usage rows name the signed-in person and the group whose policy applied (NULL for relay keys).
ALTER TABLE usage ADD COLUMN person_id TEXT;
ALTER TABLE usage ADD COLUMN person_email TEXT;
ALTER TABLE usage ADD COLUMN group_name TEXT;
