"""Every setting relay reads is documented once in each place a user looks for it, with one
default: config.NAMES, wrangler.toml [vars], .dev.vars.example and the README's tables."""

from __future__ import annotations

import re
import tomllib

import pytest

from devtools.runtime import ROOT
from relay import config

SECRETS = {
    "RELAY_CLIENT_KEYS",
    "RELAY_ADMIN_TOKEN",
    "ANTHROPIC_API_KEYS",
    "OPENAI_API_KEYS",
    "RELAY_OIDC_CLIENT_SECRET",
    "RELAY_SESSION_SECRET",
    "RELAY_ALERT_WEBHOOKS",
}
# Documented but left unset in wrangler.toml: a JSON document (RELAY_ROUTES, only commented
# there) and the price overrides, both empty by default; and sign-in's deployment-specific
# names (its issuer, client id, who may sign in, public URL, group policies, collectors).
UNSET_BY_DEFAULT = {
    "RELAY_ROUTES",
    "RELAY_PRICES",
    "RELAY_OIDC_ISSUER",
    "RELAY_OIDC_CLIENT_ID",
    "RELAY_SIGNIN_EMAIL_DOMAINS",
    "RELAY_SIGNIN_GROUPS",
    "RELAY_PUBLIC_URL",
    "RELAY_GROUP_POLICIES",
    "RELAY_TELEMETRY_COLLECTORS",
}


def _example() -> dict[str, str]:
    """NAME=value lines of .dev.vars.example, commented ones included (a documented name)."""
    found = {}
    for line in (ROOT / ".dev.vars.example").read_text().splitlines():
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


def _readme_table_names(heading: str) -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n\n", section.index("|"))]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, re.M))


def test_every_name_relay_reads_is_in_the_example_and_nothing_else_is():
    example = set(_example()) - set(config.ROUTE_SECRET_EXAMPLES)  # names RELAY_ROUTES may give
    assert example == set(config.NAMES)
    assert set(config.ROUTE_SECRET_EXAMPLES) <= set(_example())


def test_the_readme_documents_each_example_secret_for_routes():
    assert _readme_table_names("| example secret | what it holds |") == set(config.ROUTE_SECRET_EXAMPLES)


def test_the_vars_wrangler_toml_sets_are_relays_with_the_examples_values():
    vars = tomllib.loads((ROOT / "wrangler.toml").read_text())["vars"]
    example = _example()
    assert set(vars) == set(config.NAMES) - SECRETS - UNSET_BY_DEFAULT
    assert {name: example[name] for name in vars} == vars


def test_the_readme_tables_list_the_secrets_and_the_vars():
    assert _readme_table_names("| secret | meaning |") == SECRETS
    assert _readme_table_names("| var | default | meaning |") == set(config.NAMES) - SECRETS


def test_the_readme_gives_each_var_the_default_wrangler_toml_sets():
    vars = tomllib.loads((ROOT / "wrangler.toml").read_text())["vars"]
    text = (ROOT / "README.md").read_text()
    for name, value in vars.items():
        row = re.search(rf"^\| `{name}` \| ([^|]*) \|", text, re.M)
        assert row and row.group(1).strip() == f"`{value}`", name


def test_wrangler_toml_sets_each_var_to_the_default_relay_has_without_it():
    vars = tomllib.loads((ROOT / "wrangler.toml").read_text())["vars"]
    assert config.Settings.from_env(vars) == config.Settings.from_env({})


@pytest.mark.parametrize("value", ["-1", "+5", "1_000", "1e6", "\u0663", "ten"])
def test_a_number_setting_is_ascii_digits_or_refused(value):
    with pytest.raises(config.ConfigError, match="RELAY_MAX_BODY_BYTES must be a whole number"):
        config.Settings.from_env({"RELAY_MAX_BODY_BYTES": value})
    assert config.Settings.from_env({"RELAY_MAX_BODY_BYTES": " 2048 "}).max_body_bytes == 2048
