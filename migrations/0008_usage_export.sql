-- Export of the audit log to R2 (src/relay/usage/export.py): one row, the cursor and the
-- counters. through_id: the last audit row that has gone out (rows after it are pending);
-- rows, files: exported so far; failures: runs R2 refused (the next run retries).
CREATE TABLE usage_export (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through_id INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    files INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    last_success_at TEXT,
    last_failure_at TEXT,
    last_error TEXT
);
INSERT INTO usage_export (id, through_id, rows, files, failures) VALUES (1, 0, 0, 0, 0);
