"""Gateway configuration: the YAML of DESIGN.md loaded into strict pydantic models.

Unknown keys are errors everywhere (a misspelt security setting must never be silently
ignored). Relative paths are resolved against the directory of the config file, so the
gateway behaves the same whatever directory it is started from.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_gateway.connectors.mcp_servers.settings import INSTANCE_NAME, McpServerSettings

MiB = 1024 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- server -------------------------------------------------------------------------------


# A token taken from the environment shorter than this is refused (guessable).
MIN_ENV_TOKEN_CHARS = 16
NEW_TOKEN_COMMAND = "python3 -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105 - a command, not a secret


class BearerToken(Strict):
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the token")] | None = None
    token_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BearerToken:
        if (self.sha256 is None) == (self.token_env is None):
            raise ValueError("give exactly one of sha256 (the token's hash) and token_env (the name of "
                             "an environment variable holding the token)")
        return self


class HttpAuth(Strict):
    bearer_tokens: list[BearerToken] = []


class HttpSettings(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 3000
    path: str = "/mcp"
    auth: HttpAuth = HttpAuth()
    # Serving a non-loopback address without tokens must be asked for in so many words.
    allow_unauthenticated: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None
    # Browser origins allowed to call the gateway (DNS-rebinding protection).
    allowed_origins: list[str] = []
    # Host header values accepted besides the bound address; empty means the bound address only.
    allowed_hosts: list[str] = []
    stateless: bool = False
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * MiB
    # A request whose body has not fully arrived this long after its headers gets 408.
    body_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    shutdown_grace_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Open stateful sessions: overall, per actor (one token's flood never locks out the others).
    max_sessions: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    max_sessions_per_actor: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    session_idle_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    # Open TCP connections: overall and per client address (refused at accept beyond).
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    max_connections_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    # HTTP/2 (h2 over TLS, h2c in clear): off unless asked for.
    http2: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("server.http.certfile and server.http.keyfile must be set together")
        return self


class ServerSettings(Strict):
    name: str = "mcp-gateway"
    transport: Literal["stdio", "http"] = "stdio"
    actor: Annotated[str, Field(min_length=1, max_length=128)] = "local-user"
    # A JSON-RPC line (stdio) longer than this is refused without being parsed.
    max_message_bytes: Annotated[int, Field(ge=1024, le=256 * MiB)] = 4 * MiB
    http: HttpSettings = HttpSettings()


# --- audit --------------------------------------------------------------------------------


class AuditSettings(Strict):
    # A file path, or "stderr" (containers that ship logs from the process's streams).
    path: str = "./audit.jsonl"


# --- policy -------------------------------------------------------------------------------

ToolName = Literal["fs.readFile", "fs.listDir", "web.fetch", "db.query", "db.schema"]
TOOL_NAMES: tuple[str, ...] = get_args(ToolName)


class ToolLimits(Strict):
    timeout_ms: Annotated[int, Field(ge=1, le=3_600_000)] | None = None
    max_bytes: Annotated[int, Field(ge=1, le=1024 * MiB)] | None = None
    # Restrict argument values: {argument name: [allowed values]}.
    arg_allowlist: dict[str, list[Any]] = {}


class RateLimit(Strict):
    rate_per_s: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)]


class RateLimitSettings(Strict):
    per_actor: RateLimit | None = None
    global_: RateLimit | None = Field(default=None, alias="global")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ActorPolicy(Strict):
    # None keeps the global allow list; a list narrows it (never widens it).
    allow_tools: list[ToolName] | None = None
    deny_tools: list[ToolName] = []
    per_tool: dict[ToolName, ToolLimits] = {}


class PolicySettings(Strict):
    default_deny: bool = True
    allow_tools: list[ToolName] = []
    deny_tools: list[ToolName] = []
    global_timeout_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 30_000
    global_max_bytes: Annotated[int, Field(ge=1, le=1024 * MiB)] = 10 * MiB
    per_tool: dict[ToolName, ToolLimits] = {}
    actors: dict[str, ActorPolicy] = {}
    rate_limit: RateLimitSettings = RateLimitSettings()


# --- connectors ---------------------------------------------------------------------------


class WorkerPoolSettings(Strict):
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    # Calls waiting for a free worker beyond this are refused at once (UNAVAILABLE). A waiting
    # call costs a few KB; the default covers server.http.max_connections (docs/HTTP.md).
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = 1024
    # Workers are replaced between calls, before they wear out: a fresh process sheds whatever
    # state earlier calls left, and the next call cannot die of CPU time they used.
    recycle_after_calls: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    recycle_cpu_share: Annotated[float, Field(gt=0, le=0.9)] = 0.5


class FilesystemSettings(WorkerPoolSettings):
    enabled: bool = False
    allowed_paths: list[Path] = []
    denied_paths: list[Path] = []
    # Follow lookups across mount points inside an allowed root (bind mounts, overlays,
    # volumes). Off: such a path is refused (RESOLVE_NO_XDEV). On: a denied directory is then
    # still recognised when mounted itself, not when a mount shows only part of it
    # (docs/FILESYSTEM.md "Mount points").
    cross_mounts: bool = False

    @model_validator(mode="after")
    def _roots(self) -> FilesystemSettings:
        if self.enabled and not self.allowed_paths:
            raise ValueError("connectors.filesystem.allowed_paths must list at least one directory")
        for p in (*self.allowed_paths, *self.denied_paths):
            if not p.is_absolute():
                raise ValueError(f"path {str(p)!r} must be absolute after resolution")
        return self


def _default_request_headers() -> tuple[str, ...]:
    from mcp_gateway.connectors.http_fetch.urls import DEFAULT_REQUEST_HEADERS

    return DEFAULT_REQUEST_HEADERS


class HttpFetchSettings(WorkerPoolSettings):
    enabled: bool = False
    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = []
    allow_internal_cidrs: list[str] = []
    # Destination ports the fetch worker may connect to (Landlock TCP and URL check).
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = [80, 443]
    max_redirects: Annotated[int, Field(ge=0, le=5)] = 5
    user_agent: str = "mcp-gateway/0.1 (+web.fetch)"
    request_headers: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=lambda: list(_default_request_headers()),
        description="Request headers an agent may set (case-insensitive); any other is dropped. Credential, "
                    "client-address, proxy and hop-by-hop headers are refused here (see docs/WEB_FETCH.md).")

    @field_validator("request_headers")
    @classmethod
    def _request_headers(cls, v: list[str]) -> list[str]:
        from mcp_gateway.connectors.http_fetch.urls import header_never_sent

        for name in v:
            if header_never_sent(name):
                raise ValueError(f"request_headers entry {name!r} is a header web.fetch never sends "
                                 "(credential, client address, proxy or hop-by-hop)")
        return [name.lower() for name in v]

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        # An entry that can never match must be an error, not a silently dead rule.
        from mcp_gateway.connectors.http_fetch.urls import parse_host
        from mcp_gateway.guards import GuardDenied

        for d in v:
            if d == "*":
                continue
            name = d[2:] if d.startswith("*.") else d
            try:
                parse_host(f"[{name}]" if ":" in name and not name.startswith("[") else name)
            except GuardDenied as e:
                raise ValueError(f"allowed_domains entry {d!r} is not valid: {e.reason}") from None
        return v

    @field_validator("allow_internal_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as e:
                raise ValueError(f"allow_internal_cidrs entry {c!r} is not a CIDR: {e}") from None
        return v


class PostgresSettings(WorkerPoolSettings):
    enabled: bool = False
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: str = "postgres"
    user: str = "mcp_readonly"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_s: Annotated[int, Field(ge=1, le=120)] = 5
    default_max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # Relations of system schemas db.query may read beyond the reviewed introspection set
    # ("pg_catalog.pg_stat_user_tables", "information_schema.foo"; a bare name means pg_catalog).
    allow_relations: list[str] = []
    # Functions db.query may call beyond the catalog's own rule ("name" or "schema.name"):
    # functions outside pg_catalog / information_schema run only when listed here.
    allow_functions: list[str] = []


class ConnectorsSettings(Strict):
    filesystem: FilesystemSettings = FilesystemSettings()
    http_fetch: HttpFetchSettings = HttpFetchSettings()
    postgres: PostgresSettings = PostgresSettings()
    # Upstream MCP servers, by instance name (the prefix of their tools).
    mcp_servers: dict[Annotated[str, Field(pattern=INSTANCE_NAME)], McpServerSettings] = {}


# --- sandbox ------------------------------------------------------------------------------

LayerMode = Literal["required", "best_effort", "off"]


class SandboxLayers(Strict):
    user: LayerMode = "required"
    rlimits: LayerMode = "required"
    prctl: LayerMode = "required"
    landlock: LayerMode = "required"
    seccomp: LayerMode = "required"

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false; that is what the operator meant.
        return "off" if v is False else v


class ConnectorLimits(Strict):
    memory_mb: Annotated[int, Field(ge=32, le=65536)] = 512
    cpu_s: Annotated[int, Field(ge=1, le=86400)] = 300
    nofile: Annotated[int, Field(ge=16, le=65536)] = 64


# 0x70000000: above /etc/subuid delegations (login.defs SUB_UID_MAX 600100000) and systemd's
# container range (524288-1879048191), below its foreign range (0x7FFE0000) and 2^31.
DEFAULT_UID_RANGE = (1_879_048_192, 65_536)


class SandboxSettings(Strict):
    # As root: [first uid, count]; each worker takes a uid (and the same gid) of this range
    # that no account, delegation or other process uses, unique across gateways on the host.
    # null: every worker shares `user`/`group` instead (weaker; doctor warns).
    uid_range: tuple[Annotated[int, Field(ge=1000)], Annotated[int, Field(ge=1, le=1 << 20)]] | None = (
        DEFAULT_UID_RANGE
    )
    # Used only as root with uid_range null (kept so older configs stay valid).
    user: int | str = 65534
    group: int | str = 65534
    layers: SandboxLayers = SandboxLayers()
    limits: dict[Literal["filesystem", "http_fetch", "postgres"], ConnectorLimits] = {}

    def limits_for(self, connector: str) -> ConnectorLimits:
        return self.limits.get(connector, ConnectorLimits())  # type: ignore[call-overload]

    @field_validator("uid_range")
    @classmethod
    def _uid_range_fits(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and v[0] + v[1] > 1 << 31:
            raise ValueError("uid_range must end below 2^31 (larger uids break signed uid_t users)")
        return v


# --- root ---------------------------------------------------------------------------------


CONNECTOR_NAMES = ("filesystem", "http_fetch", "postgres")


class GatewayConfig(Strict):
    server: ServerSettings = ServerSettings()
    audit: AuditSettings = AuditSettings()
    policy: PolicySettings = PolicySettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    sandbox: SandboxSettings = SandboxSettings()
    # Where the config came from (not a YAML key).
    source: Path | None = Field(default=None, exclude=True)

    def enabled_connectors(self) -> list[str]:
        return [name for name in CONNECTOR_NAMES if getattr(self.connectors, name).enabled]


DEFAULT_CONFIG = Path(__file__).with_name("default_config.yaml")


class ConfigError(Exception):
    """The config cannot be used; the message names every offending key."""


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the config schema; check the spelling)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths absolute against the config file's directory (in place), the
    default audit path included."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and value != "stderr" and not value.startswith("/"):
            return str((base / value).resolve())
        return value

    audit = raw.setdefault("audit", {})
    if isinstance(audit, dict):
        audit["path"] = fix(audit.get("path", AuditSettings().path))
    fs = (raw.get("connectors") or {}).get("filesystem") if isinstance(raw.get("connectors"), dict) else None
    if isinstance(fs, dict):
        for key in ("allowed_paths", "denied_paths"):
            if isinstance(fs.get(key), list):
                fs[key] = [str(Path(fix(p)).resolve()) if isinstance(p, str) else p for p in fs[key]]
    http = (raw.get("server") or {}).get("http") if isinstance(raw.get("server"), dict) else None
    if isinstance(http, dict):
        for key in ("certfile", "keyfile"):
            if isinstance(http.get(key), str):
                http[key] = fix(http[key])


# Bounds on what a config file may make the loader do: a config is a few kilobytes of shallow YAML.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_VALUES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last one
    silently, so a second `policy:` would replace the first unseen)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_error_line(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(e).split())


def _check_shape(raw: Any, source: Path) -> None:
    """Refuse deep nesting and alias bombs before anything recursive walks the data (every
    use of a YAML alias counts again, as validation would walk it again)."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_CONFIG_VALUES:
            raise ConfigError(f"{source}: too many values (over {MAX_CONFIG_VALUES}, YAML aliases counted "
                              "each time they are used)")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _check_nesting(text: str, source: Path) -> None:
    """Measure nesting on the event stream first (the parser keeps its own stack; the
    composer and constructor that follow recurse once per level)."""
    depth = 0
    for event in yaml.parse(text, Loader=_StrictLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_config(text: str, source: Path, base: Path | None = None) -> GatewayConfig:
    try:
        _check_nesting(text, source)
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_error_line(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    _check_shape(raw, source)
    _resolve_paths(raw, (base or source.parent).resolve())
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, str(source))) from None
    return cfg.model_copy(update={"source": source})


def read_config_text(p: Path) -> str:
    """The file's text, refusing what is not a small regular UTF-8 file (a directory, a FIFO
    that would block, /dev/zero that never ends)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{p}: cannot read config: it is {kind}")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES} bytes: not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} on line {line})") from None


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    text = read_config_text(p)
    # The bundled default's relative paths (its audit log) belong to the working directory.
    return parse_config(text, p, base=Path.cwd() if p.resolve() == DEFAULT_CONFIG else None)


def resolve_env_tokens(config: GatewayConfig, environ: Mapping[str, str]) -> GatewayConfig:
    """Hash the bearer tokens named by `token_env` from the environment (the config as served).
    Raises ConfigError naming the variable that is unset or too short."""
    tokens = config.server.http.auth.bearer_tokens
    if all(t.token_env is None for t in tokens):
        return config
    resolved = []
    for i, t in enumerate(tokens):
        if t.token_env is not None:
            value = environ.get(t.token_env, "")
            key = f"server.http.auth.bearer_tokens.{i}.token_env"
            if not value:
                raise ConfigError(f"{config.source}: {key}: the environment variable {t.token_env} is not set; "
                                  f"export it with the token (e.g. export {t.token_env}=$({NEW_TOKEN_COMMAND}))")
            if len(value) < MIN_ENV_TOKEN_CHARS:
                raise ConfigError(f"{config.source}: {key}: the token in {t.token_env} is shorter than "
                                  f"{MIN_ENV_TOKEN_CHARS} characters: use a random one ({NEW_TOKEN_COMMAND})")
            t = t.model_copy(update={"sha256": hashlib.sha256(value.encode()).hexdigest()})
        resolved.append(t)
    http = config.server.http
    auth = http.auth.model_copy(update={"bearer_tokens": resolved})
    server = config.server.model_copy(update={"http": http.model_copy(update={"auth": auth})})
    return config.model_copy(update={"server": server})


def default_config_path() -> Path:
    """./config.yaml when present, else the bundled safe default (everything denied)."""
    local = Path("config.yaml")
    return local if local.exists() else DEFAULT_CONFIG
