"""Gateway configuration: the YAML of DESIGN.md loaded into strict pydantic models.

Unknown keys are errors everywhere (a misspelt security setting must never be silently
ignored). Relative paths are resolved against the directory of the config file, so the
gateway behaves the same whatever directory it is started from.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MiB = 1024 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- server -------------------------------------------------------------------------------


class BearerToken(Strict):
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the token")]


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
    shutdown_grace_s: Annotated[float, Field(gt=0, le=600)] = 30.0

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
    # Calls waiting for a free worker beyond this are refused at once.
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = 64
    # Workers are replaced between calls, before they wear out: a fresh process sheds whatever
    # state earlier calls left, and the next call cannot die of CPU time they used.
    recycle_after_calls: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    recycle_cpu_share: Annotated[float, Field(gt=0, le=0.9)] = 0.5


class FilesystemSettings(WorkerPoolSettings):
    enabled: bool = False
    allowed_paths: list[Path] = []
    denied_paths: list[Path] = []

    @model_validator(mode="after")
    def _roots(self) -> FilesystemSettings:
        if self.enabled and not self.allowed_paths:
            raise ValueError("connectors.filesystem.allowed_paths must list at least one directory")
        for p in (*self.allowed_paths, *self.denied_paths):
            if not p.is_absolute():
                raise ValueError(f"path {str(p)!r} must be absolute after resolution")
        return self


class HttpFetchSettings(WorkerPoolSettings):
    enabled: bool = False
    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = []
    allow_internal_cidrs: list[str] = []
    # Destination ports the fetch worker may connect to (Landlock TCP and URL check).
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = [80, 443]
    max_redirects: Annotated[int, Field(ge=0, le=5)] = 5
    user_agent: str = "mcp-gateway/0.1 (+web.fetch)"

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        # An entry that can never match must be an error, not a silently dead rule.
        from mcp_gateway.guards import GuardDenied
        from mcp_gateway.guards.urls import parse_host

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


class ConnectorsSettings(Strict):
    filesystem: FilesystemSettings = FilesystemSettings()
    http_fetch: HttpFetchSettings = HttpFetchSettings()
    postgres: PostgresSettings = PostgresSettings()


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


class SandboxSettings(Strict):
    # Used only when the gateway runs as root: workers switch to this uid/gid.
    user: int | str = 65534
    group: int | str = 65534
    layers: SandboxLayers = SandboxLayers()
    limits: dict[Literal["filesystem", "http_fetch", "postgres"], ConnectorLimits] = {}

    def limits_for(self, connector: str) -> ConnectorLimits:
        return self.limits.get(connector, ConnectorLimits())  # type: ignore[call-overload]


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
    """Make relative paths absolute against the config file's directory (in place)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and value != "stderr" and not value.startswith("/"):
            return str((base / value).resolve())
        return value

    audit = raw.get("audit")
    if isinstance(audit, dict) and "path" in audit:
        audit["path"] = fix(audit["path"])
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


def parse_config(text: str, source: Path, base: Path | None = None) -> GatewayConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    _resolve_paths(raw, (base or source.parent).resolve())
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, str(source))) from None
    return cfg.model_copy(update={"source": source})


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    # The bundled default's relative paths (its audit log) belong to the working directory.
    return parse_config(text, p, base=Path.cwd() if p.resolve() == DEFAULT_CONFIG else None)


def default_config_path() -> Path:
    """./config.yaml when present, else the bundled safe default (everything denied)."""
    local = Path("config.yaml")
    return local if local.exists() else DEFAULT_CONFIG
