-- Usage rollups (src/relay/usage/rollups.py): the audit log summed per UTC day and per UTC
-- hour, written in the same D1 batch as the rows they sum; reports read these, and retention
-- deletes only audit rows. `period` is YYYY-MM-DD (daily tables) or YYYY-MM-DDTHH (hourly);
-- `dims` is json_array of the dimension columns (NULL included): with `period`, the row's
-- identity. Money in nano-dollars, as usage.cost_nanos. Rows already logged are summed here.
CREATE TABLE usage_daily (
    period TEXT NOT NULL,
    dims TEXT NOT NULL,
    key_id TEXT,
    billing_tag TEXT,
    model TEXT,                             -- COALESCE(model_served, model_requested)
    provider TEXT,
    client TEXT,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    PRIMARY KEY (period, dims)
) WITHOUT ROWID;
INSERT INTO usage_daily (period, dims, key_id, billing_tag, model, provider, client, requests, errors, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_nanos, unpriced_requests, cache_savings_nanos)
SELECT substr(created_at, 1, 10), json_array(key_id, billing_tag, COALESCE(model_served, model_requested), provider, client), key_id, billing_tag, COALESCE(model_served, model_requested), provider, client, COUNT(*), COALESCE(SUM(status >= 400 OR error_type IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cost_nanos), 0), COALESCE(SUM(cost_nanos IS NULL AND COALESCE(input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens) IS NOT NULL), 0), COALESCE(SUM(cache_savings_nanos), 0)
FROM usage GROUP BY substr(created_at, 1, 10), json_array(key_id, billing_tag, COALESCE(model_served, model_requested), provider, client);
CREATE TABLE usage_hourly (
    period TEXT NOT NULL,
    dims TEXT NOT NULL,
    key_id TEXT,
    billing_tag TEXT,
    model TEXT,                             -- COALESCE(model_served, model_requested)
    provider TEXT,
    client TEXT,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    PRIMARY KEY (period, dims)
) WITHOUT ROWID;
INSERT INTO usage_hourly (period, dims, key_id, billing_tag, model, provider, client, requests, errors, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_nanos, unpriced_requests, cache_savings_nanos)
SELECT substr(created_at, 1, 13), json_array(key_id, billing_tag, COALESCE(model_served, model_requested), provider, client), key_id, billing_tag, COALESCE(model_served, model_requested), provider, client, COUNT(*), COALESCE(SUM(status >= 400 OR error_type IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cost_nanos), 0), COALESCE(SUM(cost_nanos IS NULL AND COALESCE(input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens) IS NOT NULL), 0), COALESCE(SUM(cache_savings_nanos), 0)
FROM usage GROUP BY substr(created_at, 1, 13), json_array(key_id, billing_tag, COALESCE(model_served, model_requested), provider, client);
CREATE TABLE usage_session_daily (
    period TEXT NOT NULL,
    dims TEXT NOT NULL,
    key_id TEXT,
    billing_tag TEXT,
    client TEXT,
    session_id TEXT,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    PRIMARY KEY (period, dims)
) WITHOUT ROWID;
INSERT INTO usage_session_daily (period, dims, key_id, billing_tag, client, session_id, requests, errors, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_nanos, unpriced_requests, cache_savings_nanos)
SELECT substr(created_at, 1, 10), json_array(key_id, billing_tag, client, session_id), key_id, billing_tag, client, session_id, COUNT(*), COALESCE(SUM(status >= 400 OR error_type IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cost_nanos), 0), COALESCE(SUM(cost_nanos IS NULL AND COALESCE(input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens) IS NOT NULL), 0), COALESCE(SUM(cache_savings_nanos), 0)
FROM usage GROUP BY substr(created_at, 1, 10), json_array(key_id, billing_tag, client, session_id);
CREATE TABLE usage_session_hourly (
    period TEXT NOT NULL,
    dims TEXT NOT NULL,
    key_id TEXT,
    billing_tag TEXT,
    client TEXT,
    session_id TEXT,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    PRIMARY KEY (period, dims)
) WITHOUT ROWID;
INSERT INTO usage_session_hourly (period, dims, key_id, billing_tag, client, session_id, requests, errors, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, cost_nanos, unpriced_requests, cache_savings_nanos)
SELECT substr(created_at, 1, 13), json_array(key_id, billing_tag, client, session_id), key_id, billing_tag, client, session_id, COUNT(*), COALESCE(SUM(status >= 400 OR error_type IS NOT NULL), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cost_nanos), 0), COALESCE(SUM(cost_nanos IS NULL AND COALESCE(input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens) IS NOT NULL), 0), COALESCE(SUM(cache_savings_nanos), 0)
FROM usage GROUP BY substr(created_at, 1, 13), json_array(key_id, billing_tag, client, session_id);
