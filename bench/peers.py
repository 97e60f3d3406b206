"""The peer MCP servers, each installed (pinned) into its own folder under bench/.peers/.

Installed on first use; a failed install is remembered as the reason shown in the table,
never an exception that stops the run.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"

NODE_FS_PACKAGE = "@modelcontextprotocol/server-filesystem"
NODE_FS_VERSION = "2026.8.31"
FETCH_VERSION = "2026.10.24"
POSTGRES_MCP_VERSION = "0.2.1"

# postgres-mcp pins pglast==7.2.0, which the registry here does not serve (7.20+ only), and
# its 0.3.0 adds an LLM stack (instructor). So 0.2.1 goes in with --no-deps on this tested
# set (the mcp 1.x / pydantic of its time; pglast 7.22 is the same PostgreSQL 17 parser).
POSTGRES_MCP_REQUIREMENTS = [
    f"postgres-mcp=={POSTGRES_MCP_VERSION}",
    "annotated-types==0.8.0", "anyio==4.16.0", "attrs==25.3.0", "certifi==2026.10.18", "click==8.5.1",
    "h11==0.16.0", "httpcore==1.0.9", "httpx==0.28.1", "httpx-sse==0.4.3", "humanize==4.12.3",
    "idna==3.20", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "markdown-it-py==4.3.0",
    "mcp==1.12.4", "mdurl==0.1.2", "pglast==7.22", "psycopg==3.3.9", "psycopg-binary==3.3.9",
    "psycopg-pool==3.2.6", "pydantic==2.11.7", "pydantic-settings==2.10.1", "pydantic_core==2.33.2",
    "Pygments==2.21.0", "python-dotenv==1.2.4", "python-multipart==0.0.34", "referencing==0.37.0",
    "rich==15.0.0", "rpds-py==2026.9.1", "shellingham==1.5.4", "sse-starlette==3.7.0",
    "starlette==1.10.0", "typer==0.29.2", "typing-inspection==0.4.5", "typing_extensions==4.16.0",
    "uvicorn==0.54.0", "annotated-doc==0.0.7",
]


@dataclass
class Peer:
    name: str          # package@version, as shown in the table
    argv: list[str] | None = None
    error: str | None = None


def _run(cmd: list[str], timeout: float = 900) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed: " + " | ".join(lines[-3:])[:400])


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _python_at_least(minor: int) -> str | None:
    """An interpreter >= 3.<minor> on this machine (postgres-mcp needs 3.12)."""
    cands = [shutil.which(f"python3.{m}") for m in range(minor, 16)]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")), reverse=True)
    cands += [sys.executable, "/usr/bin/python3"]
    for c in cands:
        if not c:
            continue
        try:
            out = subprocess.run([c, "-c", "import sys, ensurepip; print(sys.version_info[1])"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if out.returncode == 0 and int(out.stdout.strip() or 0) >= minor:
            return c
    return None


def _venv(folder: Path, python: str, requirements: list[str], no_deps: bool) -> None:
    stamp = folder / (".installed-" + hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12])
    if stamp.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    _log(f"installing {requirements[0]} into {folder}")
    _run([python, "-m", "venv", str(folder)])
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + (["--no-deps"] if no_deps else []) + requirements)
    stamp.touch()


def node_filesystem() -> Peer:
    name = f"{NODE_FS_PACKAGE}@{NODE_FS_VERSION}"
    folder = PEERS / "node"
    entry = folder / "node_modules" / NODE_FS_PACKAGE / "dist" / "index.js"
    try:
        node = shutil.which("node")
        npm = shutil.which("npm")
        if not node or not npm:
            return Peer(name, error="node/npm not installed")
        stamp = folder / f".installed-{NODE_FS_VERSION}"
        if not (stamp.exists() and entry.exists()):
            folder.mkdir(parents=True, exist_ok=True)
            _log(f"installing {name} into {folder}")
            _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder), name])
            stamp.touch()
        return Peer(name, argv=[node, str(entry)])
    except Exception as e:  # noqa: BLE001 - reported in the table
        return Peer(name, error=f"install failed: {e}")


def fetch_server() -> Peer:
    name = f"mcp-server-fetch=={FETCH_VERSION}"
    folder = PEERS / "fetch"
    try:
        _venv(folder, "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
              [name], no_deps=False)
        # Loopback is refused by default; robots.txt would cost an extra request per call.
        return Peer(name, argv=[str(folder / "bin" / "mcp-server-fetch"), "--ignore-robots-txt",
                                "--allow-private-ips"])
    except Exception as e:  # noqa: BLE001
        return Peer(name, error=f"install failed: {e}")


def postgres_mcp() -> Peer:
    name = f"postgres-mcp=={POSTGRES_MCP_VERSION}"
    folder = PEERS / "postgres-mcp"
    try:
        python = _python_at_least(12)
        if python is None:
            return Peer(name, error="needs Python >= 3.12 (none found on this machine)")
        _venv(folder, python, POSTGRES_MCP_REQUIREMENTS, no_deps=True)
        return Peer(name, argv=[str(folder / "bin" / "postgres-mcp"), "--access-mode=restricted"])
    except Exception as e:  # noqa: BLE001
        return Peer(name, error=f"install failed: {e}")


def py_spy() -> str | None:
    """py-spy in its own venv (for `python -m bench.profile`)."""
    folder = PEERS / "tools"
    try:
        _venv(folder, sys.executable, ["py-spy==0.4.3"], no_deps=False)
        return str(folder / "bin" / "py-spy")
    except Exception as e:  # noqa: BLE001
        _log(f"py-spy unavailable: {e}")
        return None
