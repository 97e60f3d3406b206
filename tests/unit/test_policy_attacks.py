"""Red-team attacks on policy and the catalogue: entries that cover more (or restrict less) than
the operator wrote, and tool names an untrusted instance chooses."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.config import ConfigError, GatewayConfig, PolicySettings
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import Catalogue, ConnectorKind, Instance, InstanceSettings, ToolSpec
from mcp_gateway.supervisor.policy import Policy


def _policy(config_factory, tmp_path, policy: dict, **connectors):
    conns = {"filesystem": {"enabled": True, "allowed_paths": [str(tmp_path)]}}
    conns.update(connectors)
    return Policy(config_factory({"policy": policy, "connectors": conns}))


# --- per_tool: a glob's restriction must not be lost to an exact entry ---------------------


def test_a_glob_arg_allowlist_still_holds_when_an_exact_entry_sets_limits(config_factory, tmp_path):
    # The operator restricts every fs tool's encoding, then gives readFile a longer timeout.
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.*"],
        "per_tool": {"fs.*": {"arg_allowlist": {"encoding": ["utf-8"]}},
                     "fs.readFile": {"timeout_ms": 5000}},
    })
    assert p.limits("fs.readFile", "a")[0] == 5000  # the exact entry's limit
    reason = p.check_arguments("fs.readFile", "a", {"path": "x", "encoding": "base64"})
    assert reason is not None and "policy.per_tool.fs.*.arg_allowlist.encoding" in reason


def test_every_matching_glob_restricts_not_only_the_first(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.*"],
        "per_tool": {"fs.*": {"timeout_ms": 1000},
                     "fs.read*": {"arg_allowlist": {"encoding": ["utf-8"]}}},
    })
    assert p.check_arguments("fs.readFile", "a", {"path": "x", "encoding": "base64"}) is not None
    assert p.limits("fs.readFile", "a")[0] == 1000  # limits: still the first matching glob


@pytest.mark.parametrize(("allowed", "sent"), [([0], False), ([1], True), ([1], 1.0), (["1"], 1), ([True], 1)])
def test_arg_allowlist_compares_types_too(config_factory, tmp_path, allowed, sent):
    # Python's `False == 0`, `True == 1 == 1.0`: an upstream server would see a different value.
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.readFile"], "per_tool": {"fs.readFile": {"arg_allowlist": {"n": allowed}}}})
    assert p.check_arguments("fs.readFile", "a", {"n": sent}) is not None
    assert p.check_arguments("fs.readFile", "a", {"n": allowed[0]}) is None


# --- instance names that read as kind names -------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_instance_cannot_be_named_after_a_kind(config_factory, tmp_path, kind):
    # sandbox.limits.<kind> means every instance of the kind; an instance of another kind called
    # that would take those limits as its own (and `<kind>` would mean two things).
    with pytest.raises(ConfigError, match="kind"):
        config_factory({"connectors": {"filesystem": {"instances": {kind: {"allowed_paths": [str(tmp_path)]}}}}})


# --- discovered tools: the names an untrusted instance chooses ------------------------------


class _Discovering(ConnectorKind):
    name = "discovering"
    summary = "test kind whose tools are discovered"
    settings = InstanceSettings
    seed_instance = None
    worker = "unused:Unused"
    discovers_tools = True


def _spec(instance: str, tool: str) -> ToolSpec:
    from mcp_gateway.connectors.base import Args

    return ToolSpec(instance, tool, Args, tool, "", {}, False, lambda r: "")


def _discovering(policy: dict, *tools: str) -> tuple[Catalogue, Policy]:
    kinds = {**KINDS, "discovering": _Discovering()}
    memory = Instance("memory", "discovering", InstanceSettings(enabled=True), "connectors.discovering.memory")
    catalogue = Catalogue([memory], kinds)
    catalogue.set_discovered("memory", [_spec("memory", t) for t in tools])
    return catalogue, Policy(GatewayConfig(policy=PolicySettings(**policy)), catalogue)


BAD_NAMES = ["", "a b", "del\nete", "delete\n", "x\x00", "*", "read_[abc]", "é", "dеlete", "ｄelete", "a" * 129,
             "read\u200bgraph", "tab\tname", "semi;colon", "slash/name"]


@pytest.mark.parametrize("tool", BAD_NAMES)
def test_a_discovered_name_outside_the_mcp_charset_is_left_out(tool):
    # `delete\n` passes `re.match(r"^[...]{1,128}$")`: `$` matches before a final newline.
    catalogue, p = _discovering({"allow_tools": ["memory.*"]}, tool, "read_graph")
    assert [s.name for s in catalogue] == ["memory.read_graph"]  # the others still served
    assert f"memory.{tool}" not in catalogue
    assert not p.check_tool(f"memory.{tool}", "a").allowed


@given(st.text(min_size=1, max_size=140))
def test_discovered_names_are_ascii_tool_names(tool):
    from mcp_gateway.connectors.base import TOOL_NAME_PATTERN

    catalogue, _ = _discovering({}, tool)
    names = [s.tool for s in catalogue]
    if names:
        assert names == [tool] and TOOL_NAME_PATTERN.fullmatch(tool) and tool.isascii() and len(tool) <= 128
        assert "\n" not in tool
    else:
        assert TOOL_NAME_PATTERN.fullmatch(tool) is None


def test_of_two_names_equal_but_for_case_only_the_first_is_offered():
    catalogue, _ = _discovering({}, "delete_entities", "Delete_entities", "read_graph")
    assert [s.tool for s in catalogue] == ["delete_entities", "read_graph"]


@pytest.mark.parametrize("tool", ["Delete_entities", "DELETE_ENTITIES", "delete_Entities"])
def test_deny_tools_cannot_be_dodged_by_case(tool):
    _, p = _discovering({"allow_tools": ["memory.*"], "deny_tools": ["memory.delete_*"]}, tool, "read_graph")
    assert p.exposed_tools("a") == ["memory.read_graph"]
    assert "policy.deny_tools" in p.check_tool(f"memory.{tool}", "a").reason


def test_an_actor_deny_cannot_be_dodged_by_case():
    _, p = _discovering({"allow_tools": ["memory.*"], "actors": {"bot": {"deny_tools": ["memory.delete_entities"]}}},
                        "Delete_Entities")
    assert p.exposed_tools("bot") == []
    assert p.exposed_tools("other") == ["memory.Delete_Entities"]


def test_allow_stays_exact_about_case():
    _, p = _discovering({"allow_tools": ["memory.read_*"]}, "READ_graph", "read_nodes")
    assert p.exposed_tools("a") == ["memory.read_nodes"]


def test_dotted_discovered_names_stay_in_their_instance():
    # `fs.*` covers a discovered `memory.fs.x`? No: globs are anchored at the instance prefix.
    _, p = _discovering({"allow_tools": ["memory.fs.*"], "deny_tools": []}, "fs.x.y", "fsx")
    assert p.exposed_tools("a") == ["memory.fs.x.y"]


# --- properties: actors only narrow, deny always wins ----------------------------------------

_names = st.text(alphabet="abAB_.-", min_size=1, max_size=6)
_entries = st.lists(st.builds(lambda t: f"memory.{t}", st.text(alphabet="abAB_.*?", min_size=1, max_size=5)),
                    max_size=3)


@given(tools=st.lists(_names, min_size=1, max_size=6, unique_by=str.lower), allow=_entries, deny=_entries,
       actor_allow=st.none() | _entries, actor_deny=_entries)
def test_actors_only_narrow_and_deny_always_wins(tools, allow, deny, actor_allow, actor_deny):
    actor = {"allow_tools": actor_allow, "deny_tools": actor_deny}
    _, p = _discovering({"allow_tools": allow, "deny_tools": deny, "actors": {"bot": actor}}, *tools)
    everyone, bot = set(p.exposed_tools("someone")), set(p.exposed_tools("bot"))
    assert bot <= everyone
    for name in bot | everyone:
        assert not any(fnmatch.fnmatchcase(name.lower(), d.lower()) for d in deny)
    for name in bot:
        assert not any(fnmatch.fnmatchcase(name.lower(), d.lower()) for d in actor_deny)
        assert actor_allow is None or any(fnmatch.fnmatchcase(name, a) for a in actor_allow)


def test_an_arg_allowlist_refusal_is_short_whatever_the_value(config_factory, tmp_path):
    # A discovered tool's arguments are whatever JSON the agent sent: the reason (and the audit
    # line that carries it) must not grow with it.
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.readFile"], "per_tool": {"fs.readFile": {"arg_allowlist": {"n": ["a"]}}}})
    deep: object = "x"
    for _ in range(5000):
        deep = [deep]
    for value in ("y" * 1_000_000, deep, {"k" * 100: list(range(100_000))}):
        reason = p.check_arguments("fs.readFile", "a", {"n": value})
        assert reason is not None and len(reason) < 400, len(reason or "")
