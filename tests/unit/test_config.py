from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_the_seed_config_names_the_seed_instances_and_their_tools():
    from mcp_gateway.config import GatewayConfig

    cfg = GatewayConfig()
    assert [(i.name, i.kind) for i in cfg.instances(enabled_only=False)] == [
        ("fs", "filesystem"), ("web", "http_fetch"), ("db", "postgres")]
    assert {spec.name for spec in cfg.catalogue()} == {
        "fs.readFile", "fs.listDir", "web.fetch", "db.query", "db.schema"}


# --- hostile config files: a ConfigError (one line of text) or a config, nothing else --------

_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["server", "policy", "audit", "connectors", "sandbox", "path", "actors", "http",
                         "allow_tools", "filesystem", "enabled", "allowed_paths", "bearer_tokens", "x"]) | st.text(
            max_size=8), inner, max_size=4),
    max_leaves=30)


def _only_config_errors(load) -> None:
    try:
        load()
    except ConfigError as e:
        assert str(e) and "Traceback" not in str(e)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_load_or_fail_with_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(data)
    _only_config_errors(lambda: load_config(path))


@given(_yaml_values)
def test_arbitrary_yaml_structures_load_or_fail_with_a_config_error(value):
    import yaml

    text = yaml.safe_dump(value)
    _only_config_errors(lambda: parse_config(text, Path("/nonexistent/c.yaml")))


@pytest.mark.parametrize("text, message", [
    ("policy: {}\npolicy: {}\n", "the key 'policy' is given twice"),
    ("[" * 100 + "]" * 100, "nested more than 64 levels"),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"a{i}: &a{i} [{', '.join(['*a' + ('' if i == 1 else str(i - 1))] * 10)}]\n" for i in range(1, 7)),
     "too many values"),
])
def test_shapes_no_config_has_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, tmp_path / "c.yaml")
