"""relay's development tooling: what builds and runs the local Workers runtime for `make dev`,
`make test` and `make bench`. Never part of the deployed Worker."""
