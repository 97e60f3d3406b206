"""The connector unit's interfaces: a kind, its named instances, their tools, the catalogue.

A connector *kind* (`ConnectorKind`: filesystem, http_fetch, postgres...) is one folder under
`mcp_gateway/connectors/`; `connectors/__init__.py` lists the kinds, and nothing else names
them. A config holds *instances* of kinds (`Instance`: "fs", "docs", "analytics"...); the
instance name is the tools' prefix (`fs.readFile`) and the key of everything per connector:
its pool, zygote, sandbox limits and profile, metrics labels and process titles.

This module is cheap to import (pydantic, msgspec): the supervisor imports every kind through
it; worker-only modules are imported by name (`ConnectorKind.worker`) in the zygote alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from mcp_gateway.ipc.messages import CallFailed, CallOk, CallRequest

log = logging.getLogger("mcp_gateway")

# Instance names: a tool prefix, a metrics label, part of a process title.
INSTANCE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class Strict(BaseModel):
    """Every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceSettings(Strict):
    """What every instance's settings have (each kind's settings model extends it)."""

    # docs/CONFIG.md: (description, example) per key, read by scripts/gen_config_doc.py.
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {}

    enabled: bool = False


class WorkerPoolSettings(InstanceSettings):
    """Settings of an instance served by pre-forked one-call workers (backend "pool")."""

    workers: Annotated[int, Field(ge=1, le=64)] = 2
    # Calls waiting for a free worker beyond this are refused at once (UNAVAILABLE). A waiting
    # call costs a few KB; the default covers server.http.max_connections (docs/HTTP.md).
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = 1024
    # Workers are replaced between calls, before they wear out: a fresh process sheds whatever
    # state earlier calls left, and the next call cannot die of CPU time they used.
    recycle_after_calls: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    recycle_cpu_share: Annotated[float, Field(gt=0, le=0.9)] = 0.5


@dataclass(frozen=True, slots=True)
class Instance:
    """One configured instance of a kind."""

    name: str
    kind: str
    settings: Any  # the kind's settings model
    key: str  # where its settings are in the config: "connectors.postgres.instances.analytics"

    @property
    def enabled(self) -> bool:
        return bool(self.settings.enabled)


# The tool part of a discovered name (`<instance>.<tool>`): MCP's tool-name characters, ASCII
# only. An untrusted instance chooses these names; outside this set a name could carry
# whitespace, control characters, glob metacharacters or look-alikes of a name policy denies.
TOOL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# The longest full tool name: a 32-character instance, a dot, a 128-character tool.
MAX_TOOL_NAME_CHARS = 32 + 1 + 128


# --- tool arguments and results ---------------------------------------------------------------


class Args(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Arguments of a static tool: one struct drives decoding, size caps and the JSON Schema."""


class Result(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, omit_defaults=True):
    """A static tool's result: the worker sends it encoded, the supervisor decodes it strictly
    into the tool's own struct (a result that does not match is INTERNAL_ERROR)."""


def as_dict(args: Args) -> dict[str, Any]:
    return msgspec.structs.asdict(args)


def inline_schema(struct: type) -> dict[str, Any]:
    """msgspec's schema with the top-level $ref resolved (MCP wants an object schema)."""
    schema = msgspec.json.schema(struct)
    defs = schema.pop("$defs", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        schema = defs.pop(ref.removeprefix("#/$defs/"))
    if defs:
        schema["$defs"] = defs
    schema.pop("title", None)
    return schema


def json_text(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


_result_encoder = msgspec.msgpack.Encoder()


class Backend(Protocol):
    """What serves an instance's calls (a WorkerPool, or a kind's own backend)."""

    async def run(self) -> None: ...

    async def call(self, request: CallRequest, deadline: float) -> CallOk | CallFailed: ...

    def health(self) -> dict[str, Any]: ...


class DiscoveredTool(Protocol):
    input_schema: dict[str, Any]

    def advertised(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool of one instance. `tool` is the kind's own name ("readFile"); `name` the full
    name agents and policy use ("fs.readFile")."""

    instance: str
    tool: str
    # None for a discovered tool: its backend checks the arguments against `discovered`'s schema.
    args_type: type[Args] | None
    title: str
    description: str
    output_schema: dict[str, Any]
    open_world: bool
    # Text content shown to the model, derived from the worker's result.
    render_text: Callable[[dict[str, Any]], str]
    # The structured content: the worker's result, less what render_text already carries
    # when that would be sent twice (web.fetch's body).
    structured: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda r: r)
    # A tool discovered at run time: its definition as the gateway advertises it (`advertised()`,
    # an mcp_types.Tool) and its input schema. Its result is content blocks, as MCP has them
    # ({"content": [...], "structuredContent"?: {...}}), already checked by its backend.
    discovered: DiscoveredTool | None = None
    # How to ask for less, for a RESULT_TOO_LARGE reason ("offset/length").
    smaller: str = ""
    # What a worker answers (every static tool has one; None only for a tool whose backend
    # answers with content blocks of its own, such as a discovered upstream tool).
    result_type: type[Result] | None = None

    @property
    def name(self) -> str:
        return f"{self.instance}.{self.tool}"

    def input_schema(self) -> dict[str, Any]:
        if self.discovered is not None:
            return self.discovered.input_schema
        assert self.args_type is not None
        return inline_schema(self.args_type)

    def encode_result(self, result: Any) -> bytes:
        """The worker's side: its result (a dict or the struct) checked against the tool's
        result struct and encoded. msgspec.ValidationError when it does not match."""
        return _result_encoder.encode(msgspec.convert(result, self._result_type(), strict=True))

    def decode_result(self, encoded: bytes | msgspec.Raw) -> dict[str, Any]:
        """The supervisor's side: a worker's encoded result, decoded strictly into the tool's
        result struct, as builtins for rendering. msgspec.ValidationError or DecodeError when it
        does not match."""
        return msgspec.to_builtins(msgspec.msgpack.decode(encoded, type=self._result_type(), strict=True))

    def _result_type(self) -> type[Result]:
        if self.result_type is None:
            raise msgspec.ValidationError(f"{self.name} has no result struct: no worker may answer it")
        return self.result_type

    def bound(self, instance: str) -> ToolSpec:
        """This tool as served by `instance`."""
        return replace(self, instance=instance)


def seed_name(kind: ConnectorKind, spec: ToolSpec) -> str:
    """The full name of a kind's tool in the seed config (`fs.readFile`): for callers such as
    benchmarks and examples, which must not spell it themselves."""
    return spec.bound(str(kind.seed_instance)).name


# --- the kind -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DoctorFinding:
    """One line of `mcp-gateway doctor`: PASS, WARN or FAIL, and what to do about it."""

    level: Literal["PASS", "WARN", "FAIL"]
    text: str


@dataclass(frozen=True, slots=True)
class DataPaths:
    """Directories an instance's workers read, and paths beneath them they must never reach.
    `serve`'s preflight opens each root as the trusted side (as the zygote does) and lists it as
    the worker identity, and identifies each denied path. The keys name them in messages."""

    allowed: tuple[Path, ...]
    allowed_key: str
    denied: tuple[Path, ...] = ()
    denied_key: str = ""


Guard = Callable[[Args], None]


class ConnectorKind:
    """Everything the supervisor knows of one kind of connector. Subclasses live in their kind's
    folder; each folder's `__init__.py` exports one instance as `KIND`."""

    # The config key (`connectors.<name>`).
    name: ClassVar[str]
    # One line for docs/CONFIG.md: what its tools reach.
    summary: ClassVar[str]
    # The instance settings model.
    settings: ClassVar[type[InstanceSettings]]
    # The instance that the single-object form `connectors.<name>: {...settings}` configures
    # (so the seed config's tool names stay `fs.readFile`...). None: the section is a mapping
    # `<instance>: settings` and nothing else.
    seed_instance: ClassVar[str | None]
    # "module:Class" of the worker-side `Connector`, imported only in the instance's zygote.
    worker: ClassVar[str]
    # Its tools, not yet bound to an instance (`instance` empty).
    static_tools: ClassVar[tuple[ToolSpec, ...]] = ()
    # How calls are served: "pool" (pre-forked, confined one-call workers, with a zygote forked
    # before trio starts), or "own": the kind's `start_backend` makes the backend.
    backend: ClassVar[Literal["pool", "own"]] = "pool"
    # Whether the instance's tools are discovered at run time (then any `<instance>.<tool>`
    # name is valid in policy, and `tools()` gives the static ones only).
    discovers_tools: ClassVar[bool] = False

    def tools(self, instance: Instance) -> list[ToolSpec]:
        """The instance's static tools."""
        return [spec.bound(instance.name) for spec in self.static_tools]

    def guard(self, instance: Instance, spec: ToolSpec) -> Guard | None:
        """The supervisor's cheap, bounded check of a call's decoded arguments (raises
        GuardDenied), or None. The worker enforces the same rules again for real."""
        return None

    def describe(self, instance: Instance) -> str:
        """One line for `check-config`: what this instance reaches."""
        return ""

    def data_paths(self, instance: Instance) -> DataPaths | None:
        """The host paths `serve` must find usable before it starts (a failure stops it)."""
        return None

    def doctor_checks(self, instance: Instance) -> list[DoctorFinding]:
        """The production checklist's lines for this instance (`mcp-gateway doctor`)."""
        return []

    def live_checks(self, instance: Instance, config: Any) -> list[DoctorFinding]:
        """`doctor`'s checks that run the instance for real (an upstream server started and
        initialized); `config` is the GatewayConfig."""
        return []

    def start_backend(self, instance: Instance, config: Any, catalogue: Catalogue) -> Backend:
        """The backend of an instance of a kind whose `backend` is "own" (run it with `run()`).
        `config`: the GatewayConfig (not imported here: config.py imports this module)."""
        raise NotImplementedError(f"{self.name} instances are served by worker pools")

    def startup_warnings(self, instance: Instance) -> list[str]:
        """Blocking checks `serve` runs (in a thread) once it serves; each result is logged as
        a warning. E.g. a database role that is not read-only."""
        return []


# --- the catalogue ------------------------------------------------------------------------------


def _unusable_name(tool: str, folded: dict[str, str]) -> str | None:
    """Why an instance's discovered tool name cannot be offered, or None (then it is recorded in
    `folded`, lower case -> name, against the instance's other names)."""
    if TOOL_NAME_PATTERN.fullmatch(tool) is None:
        return "its name is outside [A-Za-z0-9_.-]{1,128}"
    # Policy's deny lists match regardless of case (policy.py): two names that only differ in
    # case would be one name to them.
    twin = folded.setdefault(tool.lower(), tool)
    if twin != tool:
        return f"its name equals {twin!r} but for case"
    return None


class Catalogue:
    """Every tool of every configured instance, by full name: the static tools of each
    instance (built at start-up), and the tools an instance discovers at run time."""

    def __init__(self, instances: Iterable[Instance], kinds: dict[str, ConnectorKind]) -> None:
        self.instances: dict[str, Instance] = {i.name: i for i in instances}
        self._kinds = kinds
        self._static: dict[str, ToolSpec] = {
            spec.name: spec for i in self.instances.values() for spec in kinds[i.kind].tools(i)}
        self._discovered: dict[str, dict[str, ToolSpec]] = {}
        self._withheld: dict[str, dict[str, str]] = {}  # instance -> {tool name: why it is not offered}
        # Bumped by every change, so that whoever caches a rendering of the tools can tell.
        self.version = 0

    def kind_of(self, instance: str) -> ConnectorKind:
        return self._kinds[self.instances[instance].kind]

    def get(self, name: str) -> ToolSpec | None:
        spec = self._static.get(name)
        if spec is not None:
            return spec
        prefix, _, _ = name.partition(".")
        return self._discovered.get(prefix, {}).get(name)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[ToolSpec]:
        yield from self._static.values()
        for specs in self._discovered.values():
            yield from specs.values()

    def withheld_reason(self, name: str) -> str | None:
        """Why a discovered tool of this name is not offered (its definition is not approved...)."""
        return self._withheld.get(name.partition(".")[0], {}).get(name)

    def set_discovered(self, instance: str, specs: Iterable[ToolSpec], withheld: dict[str, str] | None = None) -> None:
        """Replace the discovered tools of `instance` (an empty list withdraws them all), and the
        tools it lists but that are not offered, with why (`withheld_reason`)."""
        found = self.instances.get(instance)
        if found is None or not self._kinds[found.kind].discovers_tools:
            raise ValueError(f"instance {instance!r} does not discover tools")
        fresh: dict[str, ToolSpec] = {}
        folded: dict[str, str] = {}
        left_out: dict[str, str] = {}
        for spec in specs:
            if spec.instance != instance or spec.name in self._static:
                raise ValueError(f"tool {spec.name!r} cannot be discovered by instance {instance!r}")
            unusable = _unusable_name(spec.tool, folded)
            if unusable is not None:  # the instance's choice, not a bug here: that tool is withheld
                log.warning("instance %s: tool %r withheld: %s", instance, spec.tool[:140], unusable)
                left_out[spec.name[:MAX_TOOL_NAME_CHARS]] = unusable
                continue
            fresh[spec.name] = spec
        self._discovered[instance] = fresh
        self._withheld[instance] = {**left_out, **(withheld or {})}
        self.version += 1
