-- How a usage row's token counts were had (src/relay/usage.py): NULL as the provider
-- reported them (or none apply); 'estimated': the stream was cut short (the client hung up,
-- the upstream broke off or sent an error event) before the provider's final count, and
-- output_tokens is relay's count of the output that had passed (src/relay/estimate.py);
-- 'unread': a JSON answer too large for relay to read, whose usage (and so cost) is unknown.
ALTER TABLE usage ADD COLUMN usage_basis TEXT;
