"""Several instances of one kind side by side in one real gateway: two file trees and two
databases, each with its own tools (`<instance>.<tool>`), its own policy and denied paths, its
own role and database, and its own sandbox profile in its own workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.gateway_process import audit_lines, children, error_of, raw_gateway, wait_until

ANALYTICS_DB = "analytics_e2e"
ANALYTICS_ROLE = "mcp_analytics_e2e"
# RLIMIT_NOFILE per instance (sandbox.limits.<instance>): distinct, so /proc tells the profiles apart.
NOFILE = {"docs": 40, "notes": 48, "app": 90, "analytics": 100}


@pytest.fixture
def analytics_db(pg_env):
    """A second database on the session cluster, readable by a role of its own (same password
    variable as the first instance: the gateway's test environment passes only that one)."""
    c = pg_env
    c.execute(f"DROP DATABASE IF EXISTS {ANALYTICS_DB}")
    c.execute(f"DROP ROLE IF EXISTS {ANALYTICS_ROLE}")
    assert c.password.replace("-", "").replace("_", "").isalnum()  # safe inside a literal
    c.execute(f"CREATE ROLE {ANALYTICS_ROLE} LOGIN PASSWORD '{c.password}'")
    c.execute(f"CREATE DATABASE {ANALYTICS_DB}")
    setup = ("CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL);"  # noqa: S608 - constants only
             "INSERT INTO events VALUES (1, 'signup'), (2, 'login');"
             f"GRANT SELECT ON events TO {ANALYTICS_ROLE}")
    c.execute(setup, dbname=ANALYTICS_DB)
    yield c
    c.execute(f"DROP DATABASE IF EXISTS {ANALYTICS_DB} WITH (FORCE)")
    c.execute(f"DROP ROLE IF EXISTS {ANALYTICS_ROLE}")


def _tree(root: Path, marker: str) -> Path:
    for sub in ("private", "hidden"):
        (root / sub).mkdir(parents=True)
        (root / sub / "x.txt").write_text(f"{marker} {sub}\n")
    (root / "readme.txt").write_text(f"{marker} readme\n")
    for p in (root, root / "private", root / "hidden"):
        p.chmod(0o755)
    return root


@pytest.fixture
def instances_config(gw_dir, analytics_db):
    docs, notes = _tree(gw_dir / "docs", "DOCS"), _tree(gw_dir / "notes", "NOTES")
    pg = analytics_db.postgres_settings(workers=1)
    pg.pop("enabled")
    cfg = {
        "server": {"transport": "stdio", "actor": "tester"},
        "audit": {"path": str(gw_dir / "audit.jsonl")},
        "policy": {"default_deny": True, "allow_tools": ["docs.*", "notes.readFile", "app.query", "analytics.*"]},
        "connectors": {
            "filesystem": {"instances": {
                "docs": {"allowed_paths": [str(docs)], "denied_paths": [str(docs / "private")], "workers": 1},
                "notes": {"allowed_paths": [str(notes)], "denied_paths": [str(notes / "hidden")], "workers": 1},
            }},
            "postgres": {"instances": {
                "app": pg,
                "analytics": {**pg, "database": ANALYTICS_DB, "user": ANALYTICS_ROLE},
            }},
        },
        "sandbox": {"limits": {name: {"nofile": n} for name, n in NOFILE.items()}},
    }
    path = gw_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, docs, notes


def _ok(result: dict) -> dict:
    assert not result.get("isError"), result
    return result["structuredContent"]


def _code(result: dict) -> str:
    assert result.get("isError"), result
    return error_of(result)["error_code"]


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def _nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    return int(line.split()[3])


def _workers_by_instance(gateway_pid: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for zygote in children(gateway_pid):
        name = _cmdline(zygote).removeprefix("mcp-gateway: ").split()[0]
        out[name] = children(zygote)
    return out


def test_two_file_trees_and_two_databases_side_by_side(instances_config, analytics_db):
    config, docs, notes = instances_config
    with raw_gateway(config) as gw:
        listed = {t["name"] for t in gw.request("tools/list")["result"]["tools"]}
        assert listed == {"docs.readFile", "docs.listDir", "notes.readFile", "app.query", "analytics.query",
                          "analytics.schema"}

        # The same relative path, two roots; each instance refused outside its own.
        assert _ok(gw.call("docs.readFile", {"path": "readme.txt"}))["content"] == "DOCS readme\n"
        assert _ok(gw.call("notes.readFile", {"path": "readme.txt"}))["content"] == "NOTES readme\n"
        assert _code(gw.call("docs.readFile", {"path": str(notes / "readme.txt")})) == "SECURITY_ERROR"
        assert _code(gw.call("notes.readFile", {"path": str(docs / "readme.txt")})) == "SECURITY_ERROR"
        # Each its own denied paths: docs denies private/, notes denies hidden/.
        assert _code(gw.call("docs.readFile", {"path": "private/x.txt"})) == "SECURITY_ERROR"
        assert _ok(gw.call("docs.readFile", {"path": "hidden/x.txt"}))["content"] == "DOCS hidden\n"
        assert _code(gw.call("notes.readFile", {"path": "hidden/x.txt"})) == "SECURITY_ERROR"
        assert _ok(gw.call("notes.readFile", {"path": "private/x.txt"}))["content"] == "NOTES private\n"
        # Each its own policy: docs.* allows listing, notes only reads.
        assert {e["name"] for e in _ok(gw.call("docs.listDir", {"path": "."}))["entries"]} >= {"readme.txt"}
        assert _code(gw.call("notes.listDir", {"path": "."})) == "POLICY_DENIED"

        # Two databases, two roles, on one cluster.
        who = "SELECT current_database(), current_user"
        assert _ok(gw.call("app.query", {"sql": who}))["rows"] == [[analytics_db.database, analytics_db.superuser]]
        assert _ok(gw.call("analytics.query", {"sql": who}))["rows"] == [[ANALYTICS_DB, ANALYTICS_ROLE]]
        assert _ok(gw.call("analytics.query", {"sql": "SELECT count(*) FROM events"}))["rows"] == [[2]]
        assert _ok(gw.call("app.query", {"sql": "SELECT count(*) FROM users"}))["rows"] == [[3]]
        assert gw.call("analytics.query", {"sql": "SELECT count(*) FROM users"})["isError"]
        assert gw.call("app.query", {"sql": "SELECT count(*) FROM events"})["isError"]
        assert _code(gw.call("app.schema", {})) == "POLICY_DENIED"
        assert [t["name"] for t in _ok(gw.call("analytics.schema", {}))["tables"]] == ["events"]

        # Each instance has workers of its own, confined by its own profile (rlimits by instance).
        workers = wait_until(lambda: (w := _workers_by_instance(gw.proc.pid)) and set(w) == set(NOFILE)
                             and all(w.values()) and w, timeout=30)
        for name, pids in workers.items():
            kind = "filesystem" if name in ("docs", "notes") else "postgres"
            for pid in pids:
                assert _cmdline(pid) == f"mcp-gateway: {name} worker ({kind})"
                assert _nofile(pid) == NOFILE[name], name
    tools = [line["tool"] for line in audit_lines(config.parent)]
    assert tools.count("notes.listDir") == 1 and tools.count("analytics.query") == 3
