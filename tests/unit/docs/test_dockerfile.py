"""The Dockerfile: multi-stage, compilers only in the build stage, non-root, health-checked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def parse_dockerfile(text: str) -> tuple[list[tuple[str, str]], list[Stage]]:
    """(instructions before the first FROM, stages). Joins continuation lines, drops comments."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    preamble: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.IGNORECASE)
            assert m, f"cannot parse FROM {rest!r}"
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        else:
            preamble.append((keyword, rest))
    return preamble, stages


def _exec_form(arg: str) -> list[str]:
    return json.loads(arg)


TEXT = (REPO / "Dockerfile").read_text()
PREAMBLE, STAGES = parse_dockerfile(TEXT)
BUILD, RUNTIME = STAGES[0], STAGES[-1]


def _installs(stage: Stage) -> str:
    return " ".join(a for a in stage.args("RUN") if "apt-get install" in a)


def test_multi_stage_on_the_pinned_python_base():
    assert len(STAGES) >= 2
    bases = {dict(PREAMBLE).get("ARG", "")}
    assert "python:3.11-slim-bookworm" in " ".join(bases) or all(
        s.base == "python:3.11-slim-bookworm" for s in STAGES)
    for stage in STAGES:
        assert stage.base in ("python:3.11-slim-bookworm", "${PYTHON_IMAGE}")
    assert BUILD.name == "build"


def test_build_stage_has_the_compilers_and_installs_the_locked_dependencies_into_opt_venv():
    packages = _installs(BUILD).split()
    assert "gcc" in packages and "libcap-dev" in packages
    runs = " ".join(BUILD.args("RUN"))
    assert "python -m venv /opt/venv" in runs
    # Every transitive dependency from the lock, then the package itself without resolving again.
    assert "/opt/venv/bin/pip install --no-cache-dir -r requirements.lock" in runs
    assert re.search(r"/opt/venv/bin/pip install --no-cache-dir --no-deps \.(\s|$)", runs)
    assert any("requirements.lock" in c for c in BUILD.args("COPY"))


def test_runtime_stage_has_runtime_libraries_only():
    packages = _installs(RUNTIME).split()
    assert "libcap2" in packages and "libseccomp2" in packages
    for dev in ("gcc", "libcap-dev", "libc6-dev", "build-essential", "python3-dev", "curl"):
        assert dev not in packages
    assert "rm -rf /var/lib/apt/lists/*" in _installs(RUNTIME)


def test_only_the_venv_and_the_example_config_are_copied_into_the_runtime():
    copies = RUNTIME.args("COPY") + RUNTIME.args("ADD")
    assert RUNTIME.args("ADD") == []
    assert len(copies) == 2, copies
    assert copies[0] == "--from=build /opt/venv /opt/venv"
    assert copies[1].split()[0] == "config.example.yaml"


def test_runs_as_numeric_non_root_user():
    users = RUNTIME.args("USER")
    assert users, "no USER in the runtime stage"
    user = users[-1]
    uid, _, gid = user.partition(":")
    assert uid == "1001" and gid in ("", "1001")
    assert any("useradd" in r and "--uid 1001" in r for r in RUNTIME.args("RUN"))
    # The USER switch comes after every RUN (nothing runs as root after it... nor needs to).
    kinds = [k for k, _ in RUNTIME.instructions]
    assert max(i for i, k in enumerate(kinds) if k == "RUN") < kinds.index("USER")


def test_port_healthcheck_entrypoint_and_cmd():
    assert RUNTIME.args("EXPOSE") == ["3000"]
    (health,) = RUNTIME.args("HEALTHCHECK")
    assert "/healthz" in health and "127.0.0.1:3000" in health
    assert "curl" not in health and "wget" not in health
    assert _exec_form(RUNTIME.args("ENTRYPOINT")[-1]) == ["mcp-gateway"]
    assert _exec_form(RUNTIME.args("CMD")[-1]) == ["serve", "--config", "/etc/mcp-gateway/config.yaml"]


def test_healthcheck_command_is_valid_python():
    (health,) = RUNTIME.args("HEALTHCHECK")
    cmd = _exec_form(health[health.index("CMD") + 3:].strip())
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "<healthcheck>", "exec")


def test_no_secrets_baked_in():
    for stage in STAGES:
        for keyword, arg in stage.instructions:
            if keyword in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|API_?KEY", arg, re.IGNORECASE), arg
    assert "POSTGRES_PASSWORD=" not in TEXT


def test_dockerignore_keeps_the_context_small_and_clean():
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in (".venv", ".git", ".pytest_cache", ".hypothesis", ".ruff_cache", "audit.jsonl",
                   "bench/.peers"):
        assert needed in entries, needed
    # ...but not what the build needs.
    for kept in ("README.md", "pyproject.toml", "mcp_gateway", "config.example.yaml"):
        assert kept not in entries
