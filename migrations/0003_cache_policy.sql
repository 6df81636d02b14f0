-- Prompt-cache policy per relay key (src/relay/cache.py): off, system, auto, system-1h or
-- auto-1h; NULL = the relay-wide default, RELAY_CACHE_POLICY.
ALTER TABLE relay_keys ADD COLUMN cache_policy TEXT;
