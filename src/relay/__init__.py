"""relay's core: plain Python, no runtime imports (src/entry.py adapts the Workers runtime to it).

A request flows through the packages in this order: `pipeline` (the front door and delivery),
`identity` (who calls: relay keys, or people signed in), `limits`, `prompt_cache`, `providers`
(routes, key pools, translation, failover), and `usage` (meter, prices, reports). `http` holds the
plain HTTP values and wire formats they all share, `admin` the admin API, usage page and CLI,
`telemetry` the OTLP relay; `config` reads settings from the Worker's vars and secrets, `services`
names what the platform lends the core (its clock among it), `log` is the one log function and
`times` the one conversion of times to ISO text and back.
"""
