from mcp_gateway.supervisor.policy import Policy


def _policy(config_factory, tmp_path, policy: dict, **connectors):
    conns = {"filesystem": {"enabled": True, "allowed_paths": [str(tmp_path)]}}
    conns.update(connectors)
    return Policy(config_factory({"policy": policy, "connectors": conns}))


def test_default_deny_exposes_only_allowed_tools_of_enabled_connectors(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {"allow_tools": ["fs.readFile", "db.query"]})
    assert p.exposed_tools("a") == ["fs.readFile"]  # db.query: postgres not enabled
    d = p.check_tool("fs.listDir", "a")
    assert not d.allowed and "not in policy.allow_tools (default deny)" in d.reason
    assert "connector db (postgres) is not enabled" in p.check_tool("db.query", "a").reason
    assert "unknown tool" in p.check_tool("fs.deleteFile", "a").reason


def test_deny_wins_over_allow(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {"allow_tools": ["fs.readFile", "fs.listDir"], "deny_tools": ["fs.listDir"]})
    assert p.exposed_tools("a") == ["fs.readFile"]
    assert "policy.deny_tools" in p.check_tool("fs.listDir", "a").reason


def test_default_deny_off_allows_enabled_tools_not_denied(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {"default_deny": False, "deny_tools": ["fs.listDir"]})
    assert p.exposed_tools("a") == ["fs.readFile"]


def test_limits_global_then_per_tool_then_actor(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.readFile"], "global_timeout_ms": 1000, "global_max_bytes": 100,
        "per_tool": {"fs.readFile": {"timeout_ms": 2000}},
        "actors": {"bot": {"per_tool": {"fs.readFile": {"max_bytes": 7}}}},
    })
    assert p.limits("fs.readFile", "someone") == (2000, 100)
    assert p.limits("fs.readFile", "bot") == (2000, 7)
    d = p.check_tool("fs.readFile", "bot")
    assert d.allowed and (d.timeout_ms, d.max_bytes) == (2000, 7)


def test_actor_policy_only_narrows(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.readFile"],
        "actors": {"bot": {"allow_tools": ["fs.readFile", "fs.listDir"]}, "ro": {"deny_tools": ["fs.readFile"]}},
    })
    assert p.exposed_tools("bot") == ["fs.readFile"]  # listDir not globally allowed
    assert p.exposed_tools("ro") == []
    assert "policy.actors.ro.deny_tools" in p.check_tool("fs.readFile", "ro").reason


def test_arg_allowlist(config_factory, tmp_path):
    p = _policy(config_factory, tmp_path, {
        "allow_tools": ["fs.readFile"],
        "per_tool": {"fs.readFile": {"arg_allowlist": {"encoding": ["utf-8"]}}},
    })
    assert p.check_arguments("fs.readFile", "a", {"path": "x", "encoding": "utf-8"}) is None
    reason = p.check_arguments("fs.readFile", "a", {"path": "x", "encoding": "base64"})
    assert reason and "arg_allowlist.encoding" in reason and "'base64'" in reason
