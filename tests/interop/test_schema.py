"""netplan schema: a valid JSON Schema (draft 2020-12) that takes every example and starter
spec, and rejects the malformed specs of tests/cli/test_bad_input.py that a schema can see.

Each case of test_bad_input is either listed here as schema-detectable (the schema must
reject it) or must be accepted (its fault needs arithmetic or the whole spec: the schema
must not be stricter than the loader); YAML that does not parse is the editor's business.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from cli_support import EXAMPLES
from interop_support import load_bad_input_cases
from planner.spec import parse_spec

CASES = load_bad_input_cases()

SCHEMA_DETECTABLE = {
    "empty-file", "only-comments", "top-level-list", "nodes-a-mapping",
    "unknown-top-key", "unknown-pool-key", "unknown-node-key", "unknown-bgp-key",
    "unknown-peer-key",
    "cidr-short-address", "cidr-prefix-over-32", "cidr-non-ascii-digits",
    "mask-over-32", "mask-over-128",
    "services-larger-than-12", "ipv6-services-larger-than-108",
    "as-number-zero", "as-number-2-pow-32",
    "two-ipv4-addresses-on-a-node",
    "mask-is-a-string", "as-number-is-a-bool", "nodes-is-a-string", "labels-is-a-list",
    "cluster-upper-case", "cluster-64-chars", "cluster-missing",
    "bad-topology", "route-reflector-without-reflectors", "ipv6-only-node-without-router-id",
}
# Well-formed for a schema: host bits, masks against prefix lengths, duplicates and
# references need the loader; the last two are faults of the command line, not the spec.
NEEDS_THE_LOADER = {
    "yaml-duplicate-top-key", "cidr-host-bits", "cidr-ipv6-host-bits",
    "mask-below-pool-prefix", "ipv6-pool-17-bits-wide",
    "duplicate-pool-names", "duplicate-node-names", "duplicate-node-addresses",
    "reflector-name-not-a-node", "reflector-selector-matches-nothing",
    "pin-outside-every-pool", "pin-wrong-mask", "two-pins-in-one-pool",
    "reserved-outside-every-pool", "output-xml", "store-unknown-scheme",
}


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    from cli_support import run_netplan

    r = run_netplan("schema", cwd=tmp_path_factory.mktemp("schema"))
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("example", sorted(EXAMPLES.rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_is_valid(validator, example):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(example.read_text()))]
    assert errors == []


@pytest.mark.parametrize("preset", ["flannel", "calico"])
def test_the_starter_specs_are_valid(validator, netplan, preset):
    r = netplan("init", "--preset", preset)
    assert r.returncode == 0, r.describe()
    assert [e.message for e in validator.iter_errors(yaml.safe_load(r.stdout))] == []


def test_every_malformed_case_is_classified():
    ids = {c.id for c in CASES}
    yaml_errors = {c.id for c in CASES if not isinstance(c.spec, dict) and _is_broken(c.spec)}
    assert SCHEMA_DETECTABLE.isdisjoint(NEEDS_THE_LOADER)
    assert ids - yaml_errors == SCHEMA_DETECTABLE | NEEDS_THE_LOADER, \
        "a new case of test_bad_input.py: say here whether a schema can see it"


def _is_broken(text) -> bool:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return True
    return False


# Not YAML at all: the editor's YAML parser reports those, not the schema.
YAML_CASES = [c for c in CASES if isinstance(c.spec, dict) or not _is_broken(c.spec)]


@pytest.mark.parametrize("case", YAML_CASES, ids=[c.id for c in YAML_CASES])
def test_malformed_specs(validator, case):
    data = case.spec if isinstance(case.spec, dict) else yaml.safe_load(case.spec)
    errors = list(validator.iter_errors(data))
    if case.id in SCHEMA_DETECTABLE:
        assert errors, f"the schema takes {case.id}"
    else:
        assert [e.message for e in errors] == [], "the schema is stricter than the loader"


def test_errors_point_at_the_field(validator):
    spec = {"cluster": "demo", "nodes": [{"name": "a", "address": "10.0.0.1", "bgpPort": 0}]}
    (error,) = validator.iter_errors(spec)
    assert list(error.absolute_path) == ["nodes", 0, "bgpPort"]
    assert "0 is less than the minimum of 1" in error.message


def test_loader_tolerances_are_kept(validator):
    """What the loader takes, the schema takes: null for omitted, padded values, /024."""
    spec = {"cluster": "demo", "preset": "calico", "pools": None, "services": None,
            "reserved": None, "avoid": [" 10.0.0.0/016 "],
            "nodes": [{"name": "a", "address": " 10.0.0.1", "labels": {"on": True, "n": 1},
                       "podCIDRs": None, "bgpPort": None},
                      {"name": "b", "addresses": ["10.0.0.2", "::ffff:10.0.0.9"],
                       "labels": None}],
            "bgp": {"routeReflectors": None, "peers": None}}
    parse_spec(spec)
    assert [e.message for e in validator.iter_errors(spec)] == []
