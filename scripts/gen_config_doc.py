#!/usr/bin/env python3
"""Generate the key reference of docs/CONFIG.md from the pydantic models in mcp_gateway/config.py.

    .venv/bin/python scripts/gen_config_doc.py           # rewrite docs/CONFIG.md in place
    .venv/bin/python scripts/gen_config_doc.py --check   # exit 1 if docs/CONFIG.md is stale

Only the text between the BEGIN/END GENERATED markers is replaced; the hand-written intro and
the full example around it are kept. The models are the source of truth for keys, types,
constraints and defaults. A key's description comes from, in this order: the field's
`Field(description=...)`, the entry in DESCRIPTIONS below, the comment lines right above the
field in config.py. A new key without any of them is still listed (with an empty description)
and the generator warns on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mcp_gateway import config as config_module  # noqa: E402
from mcp_gateway.config import GatewayConfig  # noqa: E402

DOC = REPO / "docs" / "CONFIG.md"
BEGIN = "<!-- BEGIN GENERATED: scripts/gen_config_doc.py; do not edit by hand -->"
END = "<!-- END GENERATED -->"
MiB = 1024 * 1024

# (model class name, field name) -> (description, example value or None).
# Examples are YAML values shown as `key: value`; None means "no better example than the default".
DESCRIPTIONS: dict[tuple[str, str], tuple[str, Any]] = {
    # sections
    ("GatewayConfig", "server"): ("Transport (stdio or HTTP) and how callers are identified.", None),
    ("GatewayConfig", "audit"): ("Where the audit log goes.", None),
    ("GatewayConfig", "policy"): ("Which tools may be called, by whom, with which limits.", None),
    ("GatewayConfig", "connectors"): ("What the tools reach: files, web hosts, a database. All disabled "
                                      "by default.", None),
    ("GatewayConfig", "sandbox"): ("How workers are confined (uid, layers, resource limits).", None),
    ("ServerSettings", "http"): ("Streamable HTTP transport (used when `transport: http`).", None),
    ("HttpSettings", "auth"): ("Bearer-token authentication.", None),
    ("ConnectorsSettings", "filesystem"): ("`fs.readFile`, `fs.listDir`: read-only access beneath "
                                           "allowed directories. See [FILESYSTEM.md](FILESYSTEM.md).", None),
    ("ConnectorsSettings", "http_fetch"): ("`web.fetch`: GET on allowed public hosts. See "
                                           "[WEB_FETCH.md](WEB_FETCH.md).", None),
    ("ConnectorsSettings", "postgres"): ("`db.query`, `db.schema`: read-only SQL. See "
                                         "[POSTGRES.md](POSTGRES.md).", None),
    # server
    ("ServerSettings", "name"): ("Server name announced to MCP clients in the `initialize` answer.", "corp-gateway"),
    ("ServerSettings", "transport"): (
        "`stdio`: one client on stdin/stdout (desktop agents). `http`: MCP streamable HTTP on "
        "`server.http.host:port` (shared servers, containers).", "http"),
    ("ServerSettings", "actor"): (
        "Identity recorded in the audit log and used for `policy.actors` for stdio callers (and for "
        "the `call` command). HTTP callers get the actor of their bearer token.", "alice"),
    ("ServerSettings", "max_message_bytes"): (
        "A stdio JSON-RPC line longer than this is refused without being parsed.", 1048576),
    ("HttpSettings", "host"): (
        "Address to bind. Anything but loopback needs bearer tokens (or `allow_unauthenticated`) and, "
        "for `doctor` to pass, TLS.", "0.0.0.0"),
    ("HttpSettings", "port"): ("TCP port to bind (0: any free port).", 8443),
    ("HttpSettings", "path"): ("URL path of the MCP endpoint.", "/mcp"),
    ("HttpSettings", "allow_unauthenticated"): (
        "Serve a non-loopback address without bearer tokens. Must be said in so many words; "
        "`doctor` fails it.", False),
    ("HttpSettings", "certfile"): (
        "PEM certificate chain for TLS served by the gateway itself. Set together with `keyfile`. "
        "Relative paths resolve against the config file's directory.", "/run/secrets/tls.crt"),
    ("HttpSettings", "keyfile"): ("PEM private key for `certfile` (keep it out of the config directory "
                                  "listing agents can read).", "/run/secrets/tls.key"),
    ("HttpSettings", "allowed_origins"): (
        "Browser `Origin` values allowed to call the gateway (DNS-rebinding protection). Empty: "
        "requests carrying any `Origin` header are refused.", ["https://agent.example.com"]),
    ("HttpSettings", "allowed_hosts"): (
        "`Host` header values accepted besides the bound address (add the public name when behind "
        "a proxy or load balancer).", ["mcp.example.com"]),
    ("HttpSettings", "stateless"): (
        "Stateless streamable HTTP: no session kept between requests, so any replica behind a "
        "load balancer can answer any request.", True),
    ("HttpSettings", "max_body_bytes"): ("Largest HTTP request body accepted.", 1048576),
    ("HttpSettings", "shutdown_grace_s"): (
        "On SIGTERM, how long in-flight requests may finish before the server stops.", 10),
    ("HttpSettings", "body_timeout_s"): (
        "The whole request body must arrive within this many seconds after the headers, else 408 "
        "(a trickled body cannot hold a connection).", 10),
    ("HttpSettings", "max_sessions"): (
        "Open stateful sessions at most, over all actors (beyond: 503).", 4096),
    ("HttpSettings", "max_sessions_per_actor"): (
        "Open stateful sessions at most per actor (beyond: 429), so one token cannot take them all.", 32),
    ("HttpSettings", "session_idle_timeout_s"): (
        "A session without any request for this long is closed (its id then answers 404).", 3600),
    ("HttpSettings", "max_connections"): (
        "Open TCP connections at most; more are closed at accept. Keep it below the open-file limit.", 4096),
    ("HttpSettings", "max_connections_per_client"): (
        "Open TCP connections at most from one client address (a proxy in front counts as one).", 64),
    ("HttpSettings", "http2"): (
        "Serve HTTP/2 too (h2 by ALPN over TLS, h2c upgrade in clear); HTTP/1.1 only otherwise.", True),
    ("HttpAuth", "bearer_tokens"): (
        "Accepted bearer tokens, stored as hashes; each maps to an actor. "
        "Hash a token with `printf %s \"$TOKEN\" | sha256sum`.", None),
    ("BearerToken", "actor"): ("Actor name for requests carrying this token (audit log, `policy.actors`).",
                               "ai-agent-1"),
    ("BearerToken", "sha256"): ("Hex SHA-256 of the token. The token itself never goes in the file. "
                                "Give this or `token_env`.",
                                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("BearerToken", "token_env"): (
        "Name of an environment variable holding the token itself (at least 16 characters): the "
        "gateway hashes it at start and removes it from its environment before forking any worker. "
        "For a config that runs as is (examples/local-http.yaml); give this or `sha256`. "
        "`check-config --schema-only` does not need it set.", "MCP_GATEWAY_TOKEN"),
    # audit
    ("AuditSettings", "path"): (
        "Audit log file (one JSON line per `tools/call`, opened O_APPEND, reopened on SIGHUP), or "
        "`stderr`. Relative paths resolve against the config file's directory. If the line cannot "
        "be written, the call is refused.", "/var/log/mcp-gateway/audit.jsonl"),
    # policy
    ("PolicySettings", "default_deny"): (
        "Refuse every tool not listed in `allow_tools`. Turning it off exposes every enabled "
        "connector's tools; `doctor` fails it.", True),
    ("PolicySettings", "allow_tools"): ("Tools agents may call (and see in `tools/list`).",
                                        ["fs.readFile", "fs.listDir"]),
    ("PolicySettings", "deny_tools"): ("Tools always refused; wins over `allow_tools`.", ["web.fetch"]),
    ("PolicySettings", "global_timeout_ms"): (
        "Hard deadline per call; past it the worker is SIGKILLed and replaced, the call ends with "
        "`TIMEOUT`.", 10000),
    ("PolicySettings", "global_max_bytes"): (
        "Largest result per call; the worker stops reading at the cap (`RESULT_TOO_LARGE`).", 1048576),
    ("PolicySettings", "per_tool"): ("Limits and argument allow lists per tool (override the global ones).",
                                     None),
    ("PolicySettings", "actors"): (
        "Per-actor policy, keyed by actor name. It can only narrow the global policy.", None),
    ("PolicySettings", "rate_limit"): ("Token-bucket rate limits; over the rate a call gets `RATE_LIMITED`.",
                                       None),
    ("ToolLimits", "timeout_ms"): ("Deadline for this tool (null: `global_timeout_ms`).", 60000),
    ("ToolLimits", "max_bytes"): ("Result cap for this tool (null: `global_max_bytes`).", 52428800),
    ("ToolLimits", "arg_allowlist"): (
        "Restrict argument values: `{argument: [allowed values]}`; any other value is `POLICY_DENIED`.",
        {"encoding": ["utf-8"]}),
    ("RateLimitSettings", "per_actor"): ("One bucket per actor (null: no per-actor limit).", None),
    ("RateLimitSettings", "global_"): ("One bucket shared by all actors (null: no global limit).", None),
    ("RateLimit", "rate_per_s"): ("Sustained calls per second (bucket refill rate).", 5),
    ("RateLimit", "burst"): ("Bucket size: calls allowed at once after a quiet period.", 20),
    ("ActorPolicy", "allow_tools"): (
        "Narrows the global allow list for this actor (null: the global list as is). Never widens it.",
        ["fs.readFile"]),
    ("ActorPolicy", "deny_tools"): ("Tools refused to this actor.", ["db.query"]),
    ("ActorPolicy", "per_tool"): ("Per-tool limits for this actor.", None),
    # connectors
    ("WorkerPoolSettings", "workers"): (
        "Pre-forked, sandboxed workers for this connector (= calls served in parallel).", 4),
    ("WorkerPoolSettings", "queue_size"): (
        "Calls waiting for a free worker beyond this are refused at once (`UNAVAILABLE`, "
        "decision allow); each waits at most its timeout.", 256),
    ("WorkerPoolSettings", "recycle_after_calls"): (
        "A worker is replaced, between calls, after this many calls (a fork costs about a millisecond).", 500),
    ("WorkerPoolSettings", "recycle_cpu_share"): (
        "A worker is replaced, between calls, once it has used this share of its `RLIMIT_CPU` budget "
        "(`sandbox.limits.<connector>.cpu_s`), so no call dies of CPU time earlier calls used.", 0.25),
    ("FilesystemSettings", "enabled"): ("Serve `fs.readFile` and `fs.listDir`.", True),
    ("FilesystemSettings", "allowed_paths"): (
        "Directories served read-only (relative paths resolve against the config file's directory). "
        "Relative tool paths resolve against the first one. Each must exist and be readable by the "
        "worker identity when the gateway starts (checked by `serve`, `check-config`, `doctor`).",
        ["/data"]),
    ("FilesystemSettings", "denied_paths"): ("Directories or files under the allowed paths that are refused. "
                                             "Each must exist at start (a denied path that names nothing "
                                             "is most likely a typo).", ["/data/secrets"]),
    ("FilesystemSettings", "cross_mounts"): (
        "Let lookups cross mount points inside an allowed root (bind mounts, overlays, volumes). Off "
        "(default): such paths are refused (`RESOLVE_NO_XDEV`). On: a mount of a denied directory itself "
        "is still refused, a mount showing part of one is not; see "
        "[FILESYSTEM.md](FILESYSTEM.md#mount-points).", True),
    ("HttpFetchSettings", "enabled"): ("Serve `web.fetch` (GET only).", True),
    ("HttpFetchSettings", "allowed_domains"): (
        "Host names agents may fetch: exact names, `*.example.com` (subdomains), or `*` alone (any "
        "public host). Internal addresses stay blocked either way.", ["api.github.com", "*.example.com"]),
    ("HttpFetchSettings", "allow_internal_cidrs"): (
        "Explicit exceptions to the internal-network block (cloud metadata addresses stay blocked).",
        ["10.20.0.0/16"]),
    ("HttpFetchSettings", "allowed_ports"): (
        "Destination ports the fetch worker may connect to (URL check and Landlock TCP rule).", [443]),
    ("HttpFetchSettings", "max_redirects"): ("Redirects followed, each hop re-checked.", 3),
    ("HttpFetchSettings", "user_agent"): ("User-Agent header sent.", "corp-agent/1.0"),
    ("PostgresSettings", "enabled"): ("Serve `db.query` and `db.schema`.", True),
    ("PostgresSettings", "host"): ("Database host name, address, or Unix socket directory.", "db.internal"),
    ("PostgresSettings", "port"): ("Database port (also the only port the worker may connect to).", 5432),
    ("PostgresSettings", "database"): ("Database name.", "analytics"),
    ("PostgresSettings", "user"): (
        "Role to connect as; give it SELECT only (`doctor` checks). The password comes from "
        "`POSTGRES_PASSWORD` or a libpq passfile, never from this file.", "mcp_readonly"),
    ("PostgresSettings", "sslmode"): ("libpq `sslmode`.", "verify-full"),
    ("PostgresSettings", "connect_timeout_s"): ("Connection timeout.", 5),
    ("PostgresSettings", "default_max_rows"): ("Row cap of `db.query` when the call gives no `max_rows`.", 500),
    # sandbox
    ("SandboxSettings", "uid_range"): (
        "As root: `[first uid, count]`. Each worker runs under a uid (and the same gid) of its own from "
        "this block, one no account, group, /etc/subuid delegation or other process uses, unique across "
        "every gateway on the host (checked at start: the gateway refuses a range that is taken). "
        "`null`: all workers share `user`/`group` (weaker; `doctor` warns). See "
        "[SANDBOX.md](SANDBOX.md#one-identity-per-worker).", [1879048192, 65536]),
    ("SandboxSettings", "user"): (
        "Only as root with `uid_range: null`: the uid every worker shares (number or name). Must not be "
        "0. Kept so older configs stay valid; ignored while `uid_range` is set.", "nobody"),
    ("SandboxSettings", "group"): ("Only as root with `uid_range: null`: the workers' shared gid.",
                                   "nogroup"),
    ("SandboxSettings", "layers"): ("Per sandbox layer: `required`, `best_effort` or `off`. See "
                                    "[SANDBOX.md](SANDBOX.md).", None),
    ("SandboxSettings", "limits"): ("Resource limits per connector (`filesystem`, `http_fetch`, `postgres`).",
                                    None),
    ("SandboxLayers", "user"): (
        "uid/gid drop and empty capability sets. As non-root (containers) it only clears "
        "capabilities and reports `not needed (not root)`, so `required` works there too.", "required"),
    ("SandboxLayers", "rlimits"): ("RLIMIT_DATA/CPU/NOFILE from `sandbox.limits`, NPROC/FSIZE/CORE 0.",
                                   "required"),
    ("SandboxLayers", "prctl"): ("no_new_privs, not dumpable.", "required"),
    ("SandboxLayers", "landlock"): (
        "Landlock filesystem (and TCP, ABI >= 4) rules. `required` fails worker start on kernels "
        "without Landlock.", "best_effort"),
    ("SandboxLayers", "seccomp"): ("seccomp syscall allowlist per connector.", "required"),
    ("ConnectorLimits", "memory_mb"): ("RLIMIT_DATA of each worker, in MiB.", 256),
    ("ConnectorLimits", "cpu_s"): ("RLIMIT_CPU of each worker (a worker serves many calls).", 600),
    ("ConnectorLimits", "nofile"): ("RLIMIT_NOFILE of each worker.", 128),
    # connectors.mcp_servers.<name> (docs/SANDBOX.md "Upstream servers")
    ("McpServerSettings", "command"): ("The server's argv; `command[0]` is resolved on the gateway's PATH at load. "
                                       "The server may execute this program (and its `#!` and ELF interpreters) "
                                       "and nothing else.", ["node", "/opt/mcp/server-memory/dist/index.js"]),
    ("McpServerSettings", "env"): ("Its whole environment, with `env_from_gateway`: nothing else is inherited.",
                                   {"MEMORY_FILE_PATH": "/var/lib/mcp-memory/memory.json"}),
    ("McpServerSettings", "env_from_gateway"): ("Variables copied by name from the gateway's environment (a "
                                                "missing one refuses the start).", ["GITHUB_TOKEN"]),
    ("McpServerSettings", "filesystem"): ("What it may read beyond its runtime's own files, and write.", None),
    ("McpServerSettings", "network"): ("`none` (no socket but stdio), or outbound HTTP(S) through the gateway's "
                                       "egress proxy only, under web.fetch's rules.", {"allowed_domains":
                                                                                         ["api.github.com"]}),
    ("McpServerSettings", "limits"): ("Resource limits of the server process (rlimits).", None),
    ("UpstreamLimits", "memory_mb"): ("RLIMIT_DATA in MiB (not RLIMIT_AS: node reserves far more address "
                                      "space than it uses).", None),
    ("UpstreamLimits", "cpu_s"): ("CPU seconds over the process's life (RLIMIT_CPU; SIGKILL 2 s later).", None),
    ("UpstreamLimits", "nofile"): ("Open descriptors (RLIMIT_NOFILE).", None),
}

_missing: list[str] = []


# --- types ----------------------------------------------------------------------------------


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            out.append(f">= {_num(m.ge)}")
        elif isinstance(m, annotated_types.Gt):
            out.append(f"> {_num(m.gt)}")
        elif isinstance(m, annotated_types.Le):
            out.append(f"<= {_num(m.le)}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"< {_num(m.lt)}")
        elif isinstance(m, annotated_types.MinLen):
            out.append(f"length >= {m.min_length}")
        elif isinstance(m, annotated_types.MaxLen):
            out.append(f"length <= {m.max_length}")
        elif getattr(m, "pattern", None):
            out.append(f"matches `{m.pattern}`")
        elif isinstance(m, FieldInfo):
            out += _constraints(m.metadata)
    return out


def _num(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v >= MiB and v % MiB == 0:
        return f"{v} ({v // MiB} MiB)"
    return str(v)


def _model(tp: Any) -> type[BaseModel] | None:
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def type_name(tp: Any) -> str:
    """Human type of an annotation, constraints included."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base, *meta = args
        cons = _constraints(meta)
        return type_name(base) + (f" ({', '.join(cons)})" if cons else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return text + " or null" if type(None) in args else text
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if tp is typing.Any:
        return "any"
    if _model(tp):
        return "mapping"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _dict_key_placeholder(key_tp: Any) -> str:
    if typing.get_origin(key_tp) is Literal:
        args = typing.get_args(key_tp)
        if set(args) <= {"filesystem", "http_fetch", "postgres"}:
            return "<connector>"
        return "<tool>"
    return "<name>"


def nested_model(tp: Any) -> tuple[str, type[BaseModel]] | None:
    """If the field holds models: (path suffix, model): '' for a model, '[]' for a list of them,
    '.<name>' for a mapping to them."""
    tp = _unwrap_optional(tp)
    if m := _model(tp):
        return "", m
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and (m := _model(_unwrap_optional(args[0]))):
        return "[]", m
    if origin is dict and (m := _model(_unwrap_optional(args[1]))):
        return "." + _dict_key_placeholder(args[0]), m
    return None


# --- descriptions ---------------------------------------------------------------------------


def _owner(model: type[BaseModel], name: str) -> type:
    for cls in model.__mro__:
        if name in getattr(cls, "__annotations__", {}):
            return cls
    return model


def _source_comment(cls: type, name: str) -> str:
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return ""
    pat = re.compile(rf"^\s+{re.escape(name)}\s*:")
    for i, line in enumerate(lines):
        if pat.match(line):
            comments = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                comments.insert(0, lines[j].strip().lstrip("#").strip())
                j -= 1
            return " ".join(comments)
    return ""


def describe(model: type[BaseModel], name: str, info: FieldInfo, path: str) -> tuple[str, Any]:
    owner = _owner(model, name)
    desc, example = "", None
    for cls in (model, owner):
        if (cls.__name__, name) in DESCRIPTIONS:
            desc, example = DESCRIPTIONS[(cls.__name__, name)]
            break
    if info.description:
        desc = info.description if not desc else desc
    if not desc:
        desc = _source_comment(owner, name)
    if not desc:
        _missing.append(path)
    return desc, example


# --- rendering ------------------------------------------------------------------------------


def yaml_value(v: Any) -> str:
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json", by_alias=True)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, (list, dict)) and not v:
        return "[]" if isinstance(v, list) else "{}"
    text = yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=1000).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return text.removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(info: FieldInfo) -> tuple[str, Any]:
    if info.is_required():
        return "**required**", PydanticUndefined
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)", value
    shown = f"`{yaml_value(value)}`"
    if isinstance(value, int) and not isinstance(value, bool) and value >= MiB and value % MiB == 0:
        shown += f" ({value // MiB} MiB)"
    return shown, value


def walk(model: type[BaseModel], path: str, sections: list[tuple[str, type[BaseModel], list[str]]]) -> None:
    rows = ["| key | type | default | description | example |", "|---|---|---|---|---|"]
    children: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        key = info.alias or name
        full = f"{path}.{key}" if path else key
        desc, example = describe(model, name, info, full)
        default_text, _ = _default(info)
        nested = nested_model(info.annotation)
        tname = type_name(info.annotation)
        cons = _constraints(info.metadata)
        if cons:
            tname += f" ({', '.join(cons)})"
        if nested:
            suffix, sub = nested
            child_path = full + suffix
            anchor = _anchor(child_path)
            if suffix == "":
                tname = tname.replace("mapping", f"[section](#{anchor})", 1)
            else:
                tname = re.sub(r"\bmapping\b(?!.*\bmapping\b)", f"[section](#{anchor})", tname)
            children.append((child_path, sub))
        ex = "" if example is None else f"`{key}: {yaml_value(example)}`"
        rows.append(f"| `{key}` | {_cell(tname)} | {_cell(default_text)} | {_cell(desc)} | {_cell(ex)} |")
    sections.append((path, model, rows))
    for child_path, sub in children:
        walk(sub, child_path, sections)


def _anchor(path: str) -> str:
    # GitHub's heading anchors: lowercase, drop punctuation except - and _, spaces to -.
    text = path.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def generate() -> str:
    _missing.clear()
    sections: list[tuple[str, type[BaseModel], list[str]]] = []
    walk(GatewayConfig, "", sections)
    out = [BEGIN, ""]
    for path, model, rows in sections:
        title = path if path else "top level"
        out.append(f"### `{title}`" if path else f"### {title}")
        out.append("")
        doc = inspect.getdoc(model) if model.__doc__ and model.__module__ == config_module.__name__ else ""
        if path == "":
            out.append("The file is a mapping with these sections; all are optional.")
            out.append("")
        elif doc and not doc.startswith(("Usage docs", "A base class")):
            out.append(doc.splitlines()[0])
            out.append("")
        out += rows
        out.append("")
    out.append(END)
    return "\n".join(out)


def splice(doc_text: str, generated: str) -> str:
    if BEGIN not in doc_text or END not in doc_text:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} and {END!r} are missing")
    head, _, rest = doc_text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + generated + tail


def current_section(doc_text: str) -> str:
    start = doc_text.index(BEGIN)
    end = doc_text.index(END) + len(END)
    return doc_text[start:end]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/CONFIG.md is out of date")
    args = parser.parse_args(argv)
    generated = generate()
    text = DOC.read_text(encoding="utf-8")
    for path in _missing:
        print(f"gen_config_doc: warning: {path} has no description (add Field(description=...) in "
              "config.py or an entry in scripts/gen_config_doc.py DESCRIPTIONS)", file=sys.stderr)
    if args.check:
        if current_section(text) != generated:
            print(f"{DOC} is out of date: run .venv/bin/python scripts/gen_config_doc.py", file=sys.stderr)
            return 1
        return 0
    new = splice(text, generated)
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"updated {DOC.relative_to(REPO)}", file=sys.stderr)
    else:
        print(f"{DOC.relative_to(REPO)} is up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
