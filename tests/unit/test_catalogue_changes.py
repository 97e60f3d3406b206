"""Red-team: what the supervisor caches per tool must follow the catalogue. A tool an instance
withdraws (or whose changed definition pinning withholds) must leave tools/list at once, on both
routes (the SDK's models and the hot route's bytes come from the same ToolDefinitions), and a
redefined tool's arguments must meet its new definition's guard."""

from __future__ import annotations

import json

from mcp_gateway.config import GatewayConfig, PolicySettings
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import Args, Catalogue, ConnectorKind, Instance, InstanceSettings, ToolSpec
from mcp_gateway.supervisor.audit import AuditLog
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.mcp_server import ToolDefinitions
from mcp_gateway.supervisor.policy import Policy


class _Discovering(ConnectorKind):
    name = "discovering"
    summary = "test kind whose tools are discovered"
    settings = InstanceSettings
    seed_instance = None
    worker = "unused:Unused"
    discovers_tools = True


def _spec(tool: str, description: str = "") -> ToolSpec:
    return ToolSpec("memory", tool, Args, tool, description, {}, False, lambda r: "")


def _gateway(tmp_path) -> Gateway:
    config = GatewayConfig(policy=PolicySettings(allow_tools=["memory.*"]))
    gateway = Gateway(config, {}, AuditLog(str(tmp_path / "audit.jsonl")))
    memory = Instance("memory", "discovering", InstanceSettings(enabled=True), "connectors.discovering.memory")
    gateway.catalogue = Catalogue([memory], {**KINDS, "discovering": _Discovering()})
    gateway.policy = Policy(config, gateway.catalogue)
    return gateway


def _listed(definitions: ToolDefinitions) -> tuple[list[str], list[str]]:
    models = [t.name for t in definitions.models("a")]
    encoded = [t["name"] for t in json.loads(definitions.encoded("a"))["tools"]]
    return models, encoded


def test_a_withdrawn_tool_leaves_tools_list(tmp_path):
    gateway = _gateway(tmp_path)
    definitions = ToolDefinitions(gateway)
    gateway.catalogue.set_discovered("memory", [_spec("read_graph"), _spec("delete_all")])
    assert _listed(definitions) == (["memory.read_graph", "memory.delete_all"],) * 2
    gateway.catalogue.set_discovered("memory", [_spec("read_graph")])  # e.g. pinning withheld delete_all
    assert _listed(definitions) == (["memory.read_graph"],) * 2
    gateway.catalogue.set_discovered("memory", [])
    assert _listed(definitions) == ([], [])


def test_a_changed_definition_is_listed_as_changed(tmp_path):
    gateway = _gateway(tmp_path)
    definitions = ToolDefinitions(gateway)
    gateway.catalogue.set_discovered("memory", [_spec("read_graph", "old")])
    assert [t.description for t in definitions.models("a")] == ["old"]
    gateway.catalogue.set_discovered("memory", [_spec("read_graph", "new")])
    assert [t.description for t in definitions.models("a")] == ["new"]
    assert [t["description"] for t in json.loads(definitions.encoded("a"))["tools"]] == ["new"]


class _Guarded(_Discovering):
    """Each tool's guard refuses what its own definition's description names."""

    def guard(self, instance, spec):
        def check(args, banned=spec.description):
            if banned:
                raise ValueError(f"refused by {banned}")
        return check


def test_a_redefined_tool_gets_the_guard_of_its_new_definition(tmp_path):
    gateway = _gateway(tmp_path)
    gateway.catalogue._kinds["discovering"] = _Guarded()
    gateway.catalogue.set_discovered("memory", [_spec("write", "")])
    old = gateway.catalogue.get("memory.write")
    assert gateway._guard(old) is not None
    gateway.catalogue.set_discovered("memory", [_spec("write", "the new schema")])
    new = gateway.catalogue.get("memory.write")
    import pytest

    with pytest.raises(ValueError, match="the new schema"):
        gateway._guard(new)(Args())
