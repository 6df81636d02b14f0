-- How a usage row's token counts were had (src/relay/usage.py): NULL as the provider
-- reported them (or none apply); 'unread': a JSON answer too large for relay to read, whose
-- usage (and so cost) is unknown.
ALTER TABLE usage ADD COLUMN usage_basis TEXT;
