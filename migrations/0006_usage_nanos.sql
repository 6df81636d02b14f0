-- Money as exact numbers (src/relay/usage/pricing.py): each row's cost and cache savings in
-- whole nano-dollars (1e-9 USD), which reports sum as integers. cost_usd and
-- cache_savings_usd stay, as the same amounts in dollars (the double nearest them), for
-- readers of the old columns; rows written before this migration get theirs rounded to
-- the nano-dollar here.
ALTER TABLE usage ADD COLUMN cost_nanos INTEGER;
ALTER TABLE usage ADD COLUMN cache_savings_nanos INTEGER;
UPDATE usage SET
    cost_nanos = CAST(ROUND(cost_usd * 1e9) AS INTEGER),
    cache_savings_nanos = CAST(ROUND(cache_savings_usd * 1e9) AS INTEGER)
WHERE cost_usd IS NOT NULL OR cache_savings_usd IS NOT NULL;
