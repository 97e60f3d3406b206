"""Gateway configuration: the YAML of DESIGN.md loaded into strict pydantic models.

Unknown keys are errors everywhere (a misspelt security setting must never be silently
ignored). Relative paths are resolved against the directory of the config file, so the
gateway behaves the same whatever directory it is started from.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_gateway.connectors import KINDS, catalogue_of
from mcp_gateway.connectors.base import INSTANCE_NAME_PATTERN, Catalogue, Instance, Strict
from mcp_gateway.connectors.sections import (
    FORM_TAGS,
    check_tool_entry,
    configured_instances,
    connectors_model,
    section_instances,
)

MiB = 1024 * 1024


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

# A policy entry names tools by full name, `<instance>.<tool>`, or by a glob of them
# (`fs.*`, `memory.search_*`: `*` any characters, `?` one); its instance must be configured.
ToolPattern = Annotated[str, Field(min_length=3, max_length=161, title="tool",
                                   pattern=r"^[a-z][a-z0-9_-]{0,31}\.[A-Za-z0-9_.*?-]{1,128}$"),
                        AfterValidator(check_tool_entry)]


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
    allow_tools: list[ToolPattern] | None = None
    deny_tools: list[ToolPattern] = []
    per_tool: dict[ToolPattern, ToolLimits] = {}


class PolicySettings(Strict):
    default_deny: bool = True
    allow_tools: list[ToolPattern] = []
    deny_tools: list[ToolPattern] = []
    global_timeout_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 30_000
    global_max_bytes: Annotated[int, Field(ge=1, le=1024 * MiB)] = 10 * MiB
    per_tool: dict[ToolPattern, ToolLimits] = {}
    actors: dict[str, ActorPolicy] = {}
    rate_limit: RateLimitSettings = RateLimitSettings()


# --- connectors: one section per kind, built from the kinds (connectors/__init__.py) ----------

ConnectorsSettings = connectors_model()


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
    # Keyed by instance name, or by kind (every instance of that kind); the instance's own wins.
    limits: dict[Annotated[str, Field(pattern=INSTANCE_NAME_PATTERN, title="connector")], ConnectorLimits] = {}

    def limits_for(self, instance: Instance) -> ConnectorLimits:
        return self.limits.get(instance.name) or self.limits.get(instance.kind) or ConnectorLimits()

    @field_validator("uid_range")
    @classmethod
    def _uid_range_fits(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and v[0] + v[1] > 1 << 31:
            raise ValueError("uid_range must end below 2^31 (larger uids break signed uid_t users)")
        return v


# --- root ---------------------------------------------------------------------------------


class GatewayConfig(Strict):
    server: ServerSettings = ServerSettings()
    audit: AuditSettings = AuditSettings()
    policy: PolicySettings = PolicySettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    sandbox: SandboxSettings = SandboxSettings()
    # Where the config came from (not a YAML key).
    source: Path | None = Field(default=None, exclude=True)

    @classmethod
    def model_validate(cls, obj: Any, *, context: dict[str, Any] | None = None, **kwargs: Any) -> GatewayConfig:
        # Policy entries are checked against the instances the connectors section names.
        context = {**(context or {}), "instances": configured_instances(obj)}
        return super().model_validate(obj, context=context, **kwargs)

    def instances(self, enabled_only: bool = True) -> list[Instance]:
        """The configured instances, in kind order (enabled ones only by default)."""
        found = section_instances(self.connectors)
        return [i for i in found if i.enabled] if enabled_only else found

    def catalogue(self) -> Catalogue:
        """The static tools of every configured instance (a disabled one's too: policy names them)."""
        return catalogue_of(self.instances(enabled_only=False))

    def instance(self, name: str) -> Instance:
        """The instance called `name` (KeyError when none is)."""
        for i in self.instances(enabled_only=False):
            if i.name == name:
                return i
        raise KeyError(name)

    @model_validator(mode="after")
    def _limits_name_instances(self) -> GatewayConfig:
        known = {i.name for i in self.instances(enabled_only=False)} | set(KINDS)
        for key in self.sandbox.limits:
            if key not in known:
                raise ValueError(f"sandbox.limits.{key}: neither a connector kind ({', '.join(KINDS)}) nor a "
                                 f"configured instance ({', '.join(sorted(known - set(KINDS))) or 'none'})")
        return self


DEFAULT_CONFIG = Path(__file__).with_name("default_config.yaml")


class ConfigError(Exception):
    """The config cannot be used; the message names every offending key."""


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = list(e["loc"])
        if len(loc) > 2 and loc[0] == "connectors" and loc[2] in FORM_TAGS:
            del loc[2]  # which of the section's two forms was tried: not a key
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the config schema; check the spelling)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths absolute against the config file's directory (in place), the
    default audit path included. (Instance settings resolve their own, from the validation
    context's `base`.)"""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and value != "stderr" and not value.startswith("/"):
            return str((base / value).resolve())
        return value

    audit = raw.setdefault("audit", {})
    if isinstance(audit, dict):
        audit["path"] = fix(audit.get("path", AuditSettings().path))
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
    base = (base or source.parent).resolve()
    _resolve_paths(raw, base)
    try:
        # `base`: the directory relative paths in instance settings belong to.
        cfg = GatewayConfig.model_validate(raw, context={"base": base})
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
