"""The examples and every command and config the README and docs show actually work."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from mcp_gateway.config import ConfigError, GatewayConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
K8S = sorted((REPO / "examples" / "kubernetes").glob("*.yaml"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIG_SECTIONS = {info.alias or name for name, info in GatewayConfig.model_fields.items() if not info.exclude}
HELLO = (REPO / "data" / "hello.txt").read_text()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _gateway(*args: str, cwd: Path = REPO, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcp_gateway", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=timeout)


@pytest.fixture
def example_copy():
    """config.example.yaml in a world-readable temp dir, serving the repo's data/ and auditing
    there (so the tests never write into the checkout)."""
    tmp = Path(tempfile.mkdtemp(prefix="mcp-gw-docs-"))
    tmp.chmod(0o755)
    text = (REPO / "config.example.yaml").read_text()
    text = text.replace("./audit.jsonl", str(tmp / "audit.jsonl"))
    text = text.replace("[./data/secrets]", f"[{REPO / 'data' / 'secrets'}]")
    text = text.replace("[./data]", f"[{REPO / 'data'}]")
    assert "./" not in text.split("\n", 1)[1], "config.example.yaml changed shape: update this fixture"
    (tmp / "config.example.yaml").write_text(text)
    yield tmp / "config.example.yaml"
    shutil.rmtree(tmp, ignore_errors=True)


# --- example configs ------------------------------------------------------------------------


def test_there_are_the_three_example_setups():
    assert {p.name for p in EXAMPLES} >= {"desktop-stdio.yaml", "team-http-postgres.yaml",
                                          "locked-down-container.yaml"}


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name != "prometheus-rules.yaml"], ids=lambda p: p.name)
def test_example_config_passes_check_config(path):
    # The examples name another machine's paths: --schema-only checks the file alone, from
    # another directory (relative paths resolve against the config file's directory).
    out = _gateway("check-config", "--schema-only", "--config", str(path), cwd=Path(tempfile.gettempdir()))
    assert out.returncode == 0, out.stderr
    assert "default deny: on" in out.stdout


def test_examples_hold_no_secrets_and_only_example_token_hashes():
    from mcp_gateway.doctor import find_secrets

    cm = yaml.safe_load((REPO / "examples" / "kubernetes" / "configmap.yaml").read_text())
    configs = [(p.name, p.read_text()) for p in EXAMPLES if p.name != "prometheus-rules.yaml"]
    for name, text in [*configs, ("configmap.yaml", cm["data"]["config.yaml"])]:
        assert find_secrets(text) == [], name
        if re.search(r"sha256:\s*[0-9a-f]{64}", text):
            assert "EXAMPLE token" in text, f"{name}: say that the token hashes are examples"
    for path in K8S:
        assert not re.search(r"(?i)password:\s*\S", path.read_text()), path


def test_example_token_hashes_match_the_tokens_named():
    import hashlib

    for path in EXAMPLES:
        text = path.read_text()
        tokens = re.findall(r'"(example-token-[a-z-]+-CHANGE-ME)"', text)
        hashes = set(re.findall(r"sha256:\s*([0-9a-f]{64})", text))
        assert {hashlib.sha256(t.encode()).hexdigest() for t in tokens} == hashes, path


def test_locked_down_container_example_fits_the_image():
    from mcp_gateway.config import load_config

    cfg = load_config(REPO / "examples" / "locked-down-container.yaml")
    assert cfg.server.transport == "http" and cfg.server.http.host == "0.0.0.0" and cfg.server.http.port == 3000
    assert cfg.server.http.auth.bearer_tokens and not cfg.server.http.allow_unauthenticated
    assert cfg.audit.path == "stderr" or cfg.audit.path.startswith("/var/log/mcp-gateway/")
    assert [str(p) for p in cfg.connectors.filesystem.allowed_paths] == ["/data"]
    assert set(cfg.sandbox.layers.model_dump().values()) == {"required"}
    # The Kubernetes ConfigMap carries the same config.
    cm = yaml.safe_load((REPO / "examples" / "kubernetes" / "configmap.yaml").read_text())
    in_cluster = parse_config(cm["data"]["config.yaml"], Path("/etc/mcp-gateway/config.yaml"))
    assert in_cluster.model_dump() == cfg.model_copy(update={"source": None}).model_dump()


# --- Kubernetes and Prometheus --------------------------------------------------------------


def _k8s_objects() -> dict[str, dict]:
    objs = {}
    for path in K8S:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path
                objs[doc["kind"]] = doc
    return objs


def test_kubernetes_manifests_have_the_pieces():
    objs = _k8s_objects()
    assert {"Deployment", "Service", "NetworkPolicy", "HorizontalPodAutoscaler", "ConfigMap"} <= set(objs)


def test_kubernetes_deployment_is_locked_down():
    dep = _k8s_objects()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    names = {c["name"]: c for c in pod["containers"]}
    assert len(names) == 2, "gateway + log shipper sidecar"
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1001
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    gw = names["gateway"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert gw[probe]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"]: m for m in gw["volumeMounts"]}
    assert mounts["/etc/mcp-gateway/config.yaml"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "configMap" in volumes[mounts["/etc/mcp-gateway/config.yaml"]["name"]]
    assert "emptyDir" in volumes[mounts["/var/log/mcp-gateway"]["name"]]


def test_kubernetes_network_policy_limits_both_directions():
    np = _k8s_objects()["NetworkPolicy"]["spec"]
    assert set(np["policyTypes"]) == {"Ingress", "Egress"}
    ports = {(p["protocol"], p["port"]) for rule in np["egress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 5432), ("TCP", 443)} <= ports
    assert all("namespaceSelector" in peer for rule in np["ingress"] for peer in rule["from"])


def test_prometheus_rules_alert_on_the_denial_rate():
    rules = yaml.safe_load((REPO / "examples" / "prometheus-rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    deny = alerts["MCPGatewayHighDenialRate"]
    assert 'mcp_gateway_calls_total{decision="deny"}' in deny["expr"]
    assert "> 0.2" in deny["expr"] and deny["for"] == "10m"


# --- config snippets in the docs ------------------------------------------------------------


def _yaml_blocks(path: Path) -> list[tuple[int, str]]:
    import textwrap

    text = path.read_text(encoding="utf-8")
    # Fences may be indented (inside list items): the block is dedented by the fence's indent.
    return [(text[: m.start()].count("\n") + 1, textwrap.dedent(m.group(2)))
            for m in re.finditer(r"^([ \t]*)```ya?ml\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)]


SNIPPETS = [(p, line, block) for p in DOCS if p.exists() for line, block in _yaml_blocks(p)]


def _is_config(data) -> bool:
    return isinstance(data, dict) and bool(data) and set(data) <= CONFIG_SECTIONS


def test_the_docs_show_config_snippets():
    mine = [s for s in SNIPPETS if s[0].name in ("README.md", "CONFIG.md", "SECURITY.md", "OPERATIONS.md")]
    assert sum(_is_config(yaml.safe_load(b)) for _, _, b in mine) >= 3


@pytest.mark.parametrize("path,line,block", SNIPPETS,
                         ids=[f"{p.name}:{line}" for p, line, _ in SNIPPETS])
def test_config_snippets_in_the_docs_are_valid(path, line, block, tmp_path):
    data = yaml.safe_load(block)
    if not isinstance(data, dict) or not (set(data) & CONFIG_SECTIONS):
        pytest.skip("not a gateway config (Kubernetes, Prometheus, ...)")
    assert set(data) <= CONFIG_SECTIONS, f"{path.name}:{line}: unknown top-level keys {set(data) - CONFIG_SECTIONS}"
    try:
        parse_config(block, tmp_path / "config.yaml")
    except ConfigError as e:
        pytest.fail(f"{path.name}:{line}: the config snippet does not load:\n{e}")


# --- the README's commands ------------------------------------------------------------------


def _readme_commands() -> dict[str, list[str]]:
    cmds = {}
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith(".venv/bin/mcp-gateway "):
            argv = shlex.split(line, comments=True)
            cmds[argv[1]] = argv[1:]
    return cmds


def _with_config(argv: list[str], config: Path) -> list[str]:
    out = list(argv)
    out[out.index("--config") + 1] = str(config)
    return out


def test_readme_documents_the_four_commands():
    assert set(_readme_commands()) == {"serve", "check-config", "call", "doctor"}
    assert all("--config" in argv for argv in _readme_commands().values())


def test_readme_check_config():
    out = _gateway(*_readme_commands()["check-config"])
    assert out.returncode == 0, out.stderr
    assert "tools exposed to local-user: fs.readFile, fs.listDir" in out.stdout


def test_readme_call_reads_hello_txt(example_copy):
    out = _gateway(*_with_config(_readme_commands()["call"], example_copy))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["isError"] is False
    assert result["structuredContent"]["content"] == HELLO
    (audit,) = [json.loads(x) for x in (example_copy.parent / "audit.jsonl").read_text().splitlines()]
    assert audit["request_id"] == result["request_id"] and audit["decision"] == "allow"


def test_readme_doctor_reports_the_sandbox_layers(example_copy):
    if not (REPO / "mcp_gateway" / "doctor.py").exists():
        pytest.skip("mcp_gateway/doctor.py is not there yet")
    out = _gateway(*_with_config(_readme_commands()["doctor"], example_copy))
    # The exit code depends on the host (a layer the kernel lacks is a FAIL); it must run and report.
    assert out.returncode in (0, 1), out.stderr
    assert "sandbox: host support" in out.stdout
    for layer in ("user", "prctl", "rlimits", "landlock", "seccomp"):
        assert re.search(rf"^(PASS|WARN|FAIL)\s+{layer}: ", out.stdout, re.MULTILINE), (layer, out.stdout)
    assert re.search(r"\d+ failed, \d+ warning\(s\), \d+ passed", out.stdout)
    print(f"doctor exit code {out.returncode}")


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason=".venv is missing: run make run once")
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_a_real_mcp_client():
    """`make run` exactly as a client would start it: list the tools, read data/hello.txt."""
    import trio
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command="make", args=["-s", "-C", str(REPO), "run"])

    async def session():
        with trio.fail_after(120):
            async with Client(params, read_timeout_seconds=60) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("fs.readFile", {"path": "hello.txt"})
                return tools, result

    tools, result = trio.run(session)
    assert tools == {"fs.readFile", "fs.listDir"}
    assert not result.is_error
    assert result.structured_content["content"] == HELLO


def _readme_python_snippet() -> str:
    text = (REPO / "README.md").read_text()
    (block,) = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return block


def test_the_readme_client_snippet_connects_to_make_run():
    """What `make run` tells a newcomer to do (README, "Connect a client") works as written."""
    if shutil.which("make") is None or not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("make or .venv is missing")
    out = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", _readme_python_snippet()],
                         capture_output=True, text=True, cwd=REPO, env=_env(), timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fs.listDir" in out.stdout and "fs.readFile" in out.stdout
    assert HELLO.strip() in out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root do workers take another uid, which a 0700 directory "
                                               "above the checkout shuts out")
@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="not a git checkout (the 0700 pass of scripts/test.sh runs from a plain copy)")
def test_a_clone_under_a_0700_directory_serves_the_bundled_example_to_the_sdk_client():
    """Issue 18: a newcomer who is root clones into /root (0700) and runs the example."""
    import trio
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    private = Path(tempfile.mkdtemp(prefix="mcp-gw-0700-"))
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        clone = private / "mcp-gateway"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120,
                       capture_output=True)
        env = {**_env(), "PYTHONPATH": str(clone)}
        params = StdioServerParameters(command=sys.executable, env=env, cwd=str(clone),
                                       args=["-m", "mcp_gateway", "serve", "--config", "config.example.yaml"])

        async def session():
            with trio.fail_after(120):
                async with Client(params, read_timeout_seconds=60) as client:
                    tools = {t.name for t in (await client.list_tools()).tools}
                    result = await client.call_tool("fs.readFile", {"path": "hello.txt"})
                    denied = await client.call_tool("fs.readFile", {"path": "secrets/denied-example.txt"})
                    return tools, result, denied

        tools, result, denied = trio.run(session)
        assert tools == {"fs.readFile", "fs.listDir"}
        assert not result.is_error, result
        assert result.structured_content["content"] == (clone / "data" / "hello.txt").read_text()
        assert denied.is_error and denied.content[0].text.startswith("SECURITY_ERROR")
        audit = [json.loads(x) for x in (clone / "audit.jsonl").read_text().splitlines()]
        assert [x["decision"] for x in audit] == ["allow", "deny"]
    finally:
        shutil.rmtree(private, ignore_errors=True)
