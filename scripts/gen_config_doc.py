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
from mcp_gateway.connectors import KINDS  # noqa: E402
from mcp_gateway.connectors.base import Instance  # noqa: E402

DOC = REPO / "docs" / "CONFIG.md"
BEGIN = "<!-- BEGIN GENERATED: scripts/gen_config_doc.py; do not edit by hand -->"
END = "<!-- END GENERATED -->"
MiB = 1024 * 1024


def _seed(kind: Any) -> Instance:
    """The instance the single-object form of a kind's section configures."""
    return Instance(kind.seed_instance, kind.name, kind.settings(), f"connectors.{kind.name}")


# The seed config's tool names (`fs.readFile`...), read from the kinds, for the examples below.
SEED_TOOLS = [spec.name for kind in KINDS.values() if kind.seed_instance for spec in kind.tools(_seed(kind))]

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
    ("PolicySettings", "deny_tools"): (
        "Tools always refused; wins over `allow_tools`. Matched regardless of case (an upstream server chooses "
        "its tools' names: `memory.delete_*` also refuses `Delete_all`).", SEED_TOOLS[2:3]),
    ("PolicySettings", "global_timeout_ms"): (
        "Hard deadline per call; past it the worker is SIGKILLed and replaced, the call ends with "
        "`TIMEOUT`.", 10000),
    ("PolicySettings", "global_max_bytes"): (
        "Largest result per call; the worker stops reading at the cap (`RESULT_TOO_LARGE`).", 1048576),
    ("PolicySettings", "per_tool"): (
        "Limits and argument allow lists per tool (override the global ones). A key is a tool name or a glob; "
        "an exact name wins over globs, else the first matching glob, for `timeout_ms`/`max_bytes`; the "
        "`arg_allowlist` of every matching key applies.", None),
    ("PolicySettings", "actors"): (
        "Per-actor policy, keyed by actor name. It can only narrow the global policy.", None),
    ("PolicySettings", "rate_limit"): ("Token-bucket rate limits; over the rate a call gets `RATE_LIMITED`.",
                                       None),
    ("ToolLimits", "timeout_ms"): ("Deadline for this tool (null: `global_timeout_ms`).", 60000),
    ("ToolLimits", "max_bytes"): ("Result cap for this tool (null: `global_max_bytes`).", 52428800),
    ("ToolLimits", "arg_allowlist"): (
        "Restrict argument values: `{argument: [allowed values]}`; any other value is `POLICY_DENIED`. A value "
        "matches only one of the same JSON type (`true` is not `1`, `1.0` is not `1`).",
        {"encoding": ["utf-8"]}),
    ("RateLimitSettings", "per_actor"): ("One bucket per actor (null: no per-actor limit).", None),
    ("RateLimitSettings", "global_"): ("One bucket shared by all actors (null: no global limit).", None),
    ("RateLimit", "rate_per_s"): ("Sustained calls per second (bucket refill rate).", 5),
    ("RateLimit", "burst"): ("Bucket size: calls allowed at once after a quiet period.", 20),
    ("ActorPolicy", "allow_tools"): (
        "Narrows the global allow list for this actor (null: the global list as is). Never widens it.",
        SEED_TOOLS[:1]),
    ("ActorPolicy", "deny_tools"): ("Tools refused to this actor.", SEED_TOOLS[3:4]),
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
    ("SandboxSettings", "limits"): (
        "Resource limits per connector: keyed by instance name, or by kind for every instance of that kind "
        "(an instance's own entry wins).", None),
    ("PolicySettings", "allow_tools"): (
        "Tools agents may call (and see in `tools/list`): full names `<instance>.<tool>`, or globs of them "
        "(`*` any characters, `?` one). Each must name a configured instance.", SEED_TOOLS[:2]),
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


def _title(meta: list[Any]) -> str | None:
    """The `Field(title=...)` of an annotated name (instance, tool, connector)."""
    return next((m.title for m in meta if isinstance(m, FieldInfo) and m.title), None)


def _forms(tp: Any) -> tuple[type[BaseModel], type[BaseModel]] | None:
    """(single-object model, `instances:` model) of a connectors.<kind> section, else None."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    models = [_model(typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a)
              for a in typing.get_args(tp)]
    if len(models) == 2 and all(models) and "instances" in models[1].model_fields:  # type: ignore[union-attr]
        return models[0], models[1]  # type: ignore[return-value]
    return None


def type_name(tp: Any) -> str:
    """Human type of an annotation, constraints included."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base, *meta = args
        if (title := _title(meta)) is not None:
            return f"{title} name" + (" or glob" if title == "tool" else "")
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
    if typing.get_origin(key_tp) is typing.Annotated and (title := _title(list(typing.get_args(key_tp)[1:]))):
        return f"<{title}>"
    return "<name>"


def nested_model(tp: Any) -> tuple[str, type[BaseModel]] | None:
    """If the field holds models: (path suffix, model): '' for a model, '[]' for a list of them,
    '.<name>' for a mapping to them."""
    tp = _unwrap_optional(tp)
    if m := _model(tp):
        return "", m
    if forms := _forms(tp):
        return "", forms[0]
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
        if name in getattr(cls, "field_docs", {}):  # a kind's settings document their own keys
            desc, example = cls.field_docs[name]  # type: ignore[attr-defined]
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
            if _forms(_unwrap_optional(info.annotation)):
                tname = f"[section](#{anchor}) (one instance), or `instances:` mapping of instance name to that section"
            elif suffix == "":
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


def _instances_note(path: str, kind: Any) -> str:
    return (f"These keys configure one instance, `{kind.seed_instance}` (its tools: "
            f"{', '.join(f'`{s.name}`' for s in kind.tools(_seed(kind)))}). For several, give "
            f"`{path}.instances.<instance>` with the same keys for each (an instance named there is enabled "
            f"unless it says `enabled: false`); their tools are `<instance>.<tool>`. Instance names are unique "
            f"across kinds and may not be a kind's name.")


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
        if (kind := KINDS.get(path.removeprefix("connectors."))) is not None:
            out += [_instances_note(path, kind), ""]
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
