"""Named instances in the config, policy entries by name or glob, and the catalogue they build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mcp_gateway.config import ConfigError, GatewayConfig, parse_config
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import Catalogue, Instance
from mcp_gateway.supervisor.policy import Policy

TWO = """
connectors:
  filesystem:
    instances:
      docs: {allowed_paths: [docs]}
      notes: {allowed_paths: [/srv/notes], enabled: false}
  postgres:
    instances: {app: {}, analytics: {database: a}}
"""


def _parse(text: str, tmp_path: Path) -> GatewayConfig:
    return parse_config(text, tmp_path / "c.yaml")


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        _parse(text, tmp_path)
    return str(e.value)


def test_the_seed_form_is_one_instance_per_kind_named_as_before(tmp_path):
    cfg = _parse("connectors:\n  filesystem: {enabled: true, allowed_paths: [/d]}\n", tmp_path)
    assert [(i.name, i.kind, i.enabled, i.key) for i in cfg.instances(enabled_only=False)] == [
        ("fs", "filesystem", True, "connectors.filesystem"), ("web", "http_fetch", False, "connectors.http_fetch"),
        ("db", "postgres", False, "connectors.postgres")]


def test_named_instances_are_enabled_unless_they_say_so_and_resolve_their_paths(tmp_path):
    cfg = _parse(TWO, tmp_path)
    assert [i.name for i in cfg.instances()] == ["docs", "app", "analytics"]
    assert cfg.instance("notes").enabled is False
    assert cfg.instance("docs").settings.allowed_paths == [tmp_path / "docs"]
    assert cfg.instance("analytics").key == "connectors.postgres.instances.analytics"
    assert sorted(spec.name for spec in cfg.catalogue() if spec.instance in ("docs", "analytics")) == [
        "analytics.query", "analytics.schema", "docs.listDir", "docs.readFile"]


def test_instance_names_are_checked_and_unique_across_kinds(tmp_path):
    assert "must be unique" in _error("connectors:\n  postgres: {instances: {fs: {}}}\n", tmp_path)
    assert "instances.Bad" in _error("connectors:\n  postgres: {instances: {Bad: {}}}\n", tmp_path)
    # a key of the single form stays an unknown key, with its plain location
    assert "connectors.postgres.instance: unknown key" in _error("connectors:\n  postgres: {instance: {}}\n",
                                                                tmp_path)


@pytest.mark.parametrize("entry,found", [
    ("fs.readFile", "names no configured instance"),         # the seed name is gone with `instances:`
    ("docs.readfile", "has no tool 'readfile'"),              # a typo of a static tool
    ("app.d*", "matches no tool of instance app"),            # a glob that can never match
    ("nope.*", "names no configured instance"),
])
def test_policy_entries_name_configured_instances(tmp_path, entry, found):
    text = TWO + f"policy:\n  allow_tools: ['{entry}']\n"
    message = _error(text, tmp_path)
    assert "policy.allow_tools.0" in message and found in message


def test_sandbox_limits_take_instances_and_kinds_only(tmp_path):
    cfg = _parse(TWO + "sandbox:\n  limits: {postgres: {nofile: 99}, analytics: {nofile: 77}}\n", tmp_path)
    assert cfg.sandbox.limits_for(cfg.instance("app")).nofile == 99
    assert cfg.sandbox.limits_for(cfg.instance("analytics")).nofile == 77
    assert "sandbox.limits.bogus" in _error(TWO + "sandbox:\n  limits: {bogus: {}}\n", tmp_path)


def test_policy_globs_and_per_tool_precedence(tmp_path):
    # A glob names one instance: no glob over instances ("*.schema" is refused by the entry's shape).
    assert "policy.deny_tools.0" in _error(TWO + "policy:\n  deny_tools: ['*.schema']\n", tmp_path)
    cfg = _parse(TWO + """
policy:
  allow_tools: ["docs.*", "analytics.*", app.query]
  deny_tools: [analytics.schema]
  per_tool:
    "analytics.*": {timeout_ms: 111}
    analytics.query: {timeout_ms: 222}
    "app.q*": {max_bytes: 5}
""", tmp_path)
    p = Policy(cfg)
    assert p.exposed_tools("a") == ["docs.readFile", "docs.listDir", "app.query", "analytics.query"]
    assert p.limits("analytics.query", "a")[0] == 222  # the exact name wins over the glob
    assert p.limits("docs.readFile", "a")[0] == 30_000
    assert p.limits("app.query", "a")[1] == 5
    assert "policy.deny_tools" in p.check_tool("analytics.schema", "a").reason


def test_the_catalogue_takes_discovered_tools_of_an_instance_that_discovers_them():
    class Discovering(type(KINDS["filesystem"])):  # a stand-in kind that discovers its tools
        discovers_tools = True
        static_tools = ()

    kinds = {**KINDS, "discovering": Discovering()}
    up = Instance("up", "discovering", None, "connectors.discovering.up")
    fs = Instance("fs", "filesystem", None, "connectors.filesystem")
    catalogue = Catalogue([up, fs], kinds)
    template = KINDS["filesystem"].static_tools[0]
    found = [replace(template, instance="up", tool="search"), replace(template, instance="up", tool="read")]
    catalogue.set_discovered("up", found)
    assert {s.name for s in catalogue} == {"fs.readFile", "fs.listDir", "up.search", "up.read"}
    assert catalogue.get("up.search") is found[0] and catalogue.version == 1
    catalogue.set_discovered("up", found[1:])  # replaced: up.search withdrawn
    assert "up.search" not in catalogue and "up.read" in catalogue
    with pytest.raises(ValueError):
        catalogue.set_discovered("fs", found)  # a kind with static tools only
    with pytest.raises(ValueError):
        catalogue.set_discovered("up", [replace(template, instance="fs")])  # another instance's tool
