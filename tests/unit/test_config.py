from pathlib import Path

import pytest

from mcp_gateway.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_serves_data_read_only():
    cfg = load_config(REPO / "config.example.yaml")
    assert cfg.connectors.filesystem.enabled
    assert cfg.connectors.filesystem.allowed_paths == [REPO / "data"]
    assert cfg.policy.default_deny
    assert set(cfg.policy.allow_tools) == {"fs.readFile", "fs.listDir"}


def test_bundled_default_denies_everything():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.policy.default_deny and cfg.policy.allow_tools == []
    assert not any(getattr(cfg.connectors, c).enabled for c in ("filesystem", "http_fetch", "postgres"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("polcy: {}\n", "polcy"),
        ("policy:\n  default_deny: true\n  alow_tools: []\n", "policy.alow_tools"),
        ("connectors:\n  filesystem:\n    enabled: true\n    allowed_path: [/tmp]\n",
         "connectors.filesystem.allowed_path"),
        ("server:\n  http:\n    auth:\n      bearer_tokens: [{actor: a, sha256: abc, extra: 1}]\n",
         "server.http.auth.bearer_tokens.0"),
    ],
)
def test_unknown_keys_are_errors_that_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "c.yaml")
    assert key in str(err.value)
    assert "unknown key" in str(err.value) or "sha256" in str(err.value)


def test_wrong_types_and_bad_values_are_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config("policy:\n  global_timeout_ms: soon\n  allow_tools: [fs.deleteFile]\n", tmp_path / "c.yaml")
    msg = str(err.value)
    assert "policy.global_timeout_ms" in msg and "policy.allow_tools.0" in msg


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = parse_config(
        "audit: {path: ./logs/a.jsonl}\nconnectors:\n  filesystem:\n    enabled: true\n    allowed_paths: [data]\n",
        tmp_path / "c.yaml",
    )
    assert cfg.audit.path == str(tmp_path / "logs" / "a.jsonl")
    assert cfg.connectors.filesystem.allowed_paths == [tmp_path / "data"]


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("a: [", tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("- 1\n", tmp_path / "c.yaml")


def test_bad_cidr_and_tls_pair(tmp_path):
    with pytest.raises(ConfigError, match="allow_internal_cidrs"):
        parse_config("connectors:\n  http_fetch:\n    allow_internal_cidrs: [nope]\n", tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="certfile"):
        parse_config("server:\n  http:\n    certfile: /x.pem\n", tmp_path / "c.yaml")


def test_enabled_filesystem_needs_a_root(tmp_path):
    with pytest.raises(ConfigError, match="allowed_paths"):
        parse_config("connectors:\n  filesystem:\n    enabled: true\n", tmp_path / "c.yaml")


def test_bundled_default_writes_its_audit_log_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(DEFAULT_CONFIG).audit.path == str(tmp_path / "audit.jsonl")


def test_unquoted_yaml_off_means_off_and_on_is_refused(tmp_path):
    cfg = parse_config("sandbox:\n  layers: {seccomp: off, landlock: best_effort}\n", tmp_path / "c.yaml")
    assert cfg.sandbox.layers.seccomp == "off" and cfg.sandbox.layers.landlock == "best_effort"
    with pytest.raises(ConfigError, match="sandbox.layers.user"):
        parse_config("sandbox:\n  layers: {user: on}\n", tmp_path / "c.yaml")


def test_the_config_knows_exactly_the_catalogue_tools():
    from mcp_gateway.config import TOOL_NAMES
    from mcp_gateway.tools import TOOLS

    assert set(TOOL_NAMES) == set(TOOLS)
    assert {spec.connector for spec in TOOLS.values()} == {"filesystem", "http_fetch", "postgres"}
