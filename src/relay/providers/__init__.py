"""Where a request goes upstream: providers and model routes from RELAY_ROUTES (`model_routes`),
upstream key pools and cool-downs (`key_pool`), one target's call in its provider's format
(`target_call`), failover across a route's targets (`failover`), the model list, and Anthropic <->
OpenAI translation (`translate`)."""
