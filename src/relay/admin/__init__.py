"""Operating relay: the admin API under /admin/ (`api`), the usage page and its script, and the
`python -m relay keys` CLI (`cli`) that drives the admin API."""
