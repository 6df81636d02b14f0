-- Streams open per relay key, for keys with max_concurrent_streams. A row is added when a
-- streaming request starts and removed when its response has ended; rows older than the
-- longest stream relay expects (limits.STREAM_MAX_SECONDS) no longer count, so an isolate
-- that died mid-stream cannot hold a slot for ever.
CREATE TABLE open_streams (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    started_at REAL NOT NULL  -- epoch seconds
);
CREATE INDEX open_streams_by_key ON open_streams (key_id, started_at);
