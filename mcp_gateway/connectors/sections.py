"""The `connectors` section of the config, built from the kinds, and the instances it names.

Each kind's key takes one of two forms:

* the single object of DESIGN.md (`connectors.postgres: {enabled: true, host: ...}`): one
  instance, named by the kind's `seed_instance` ("db"), so the seed config's tool names stay;
* `{instances: {<name>: {...settings...}}}`: several named instances, each enabled unless it
  says `enabled: false`.

A kind without a seed instance (its tools are always prefixed by a name the operator chose)
takes only the mapping `<name>: {...settings...}`. Instance names are unique across kinds.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import INSTANCE_NAME_PATTERN, ConnectorKind, Instance, Strict

InstanceName = Annotated[str, Field(pattern=INSTANCE_NAME_PATTERN, title="instance")]

# Tags of the two forms (they never appear in a config: error locations drop them).
SINGLE, NAMED = "single", "named"
FORM_TAGS = (SINGLE, NAMED)


def _form(value: Any) -> str:
    if isinstance(value, dict):
        return NAMED if "instances" in value else SINGLE
    return NAMED if hasattr(value, "instances") else SINGLE


def _enabled_by_default(cls: type, value: Any) -> Any:
    # Naming an instance is asking for it: it is enabled unless it says otherwise.
    if not isinstance(value, dict):
        return value
    return {name: {"enabled": True, **s} if isinstance(s, dict) else s for name, s in value.items()}


def _named_model(kind: ConnectorKind) -> type[BaseModel]:
    title = kind.settings.__name__.removesuffix("Settings")
    return create_model(
        f"{title}Instances",
        __base__=Strict,
        __doc__=f"Several named {kind.name} instances; their tools are `<name>.<tool>`.",
        __validators__={"_enabled": field_validator("instances", mode="before")(classmethod(_enabled_by_default))},
        instances=(dict[InstanceName, kind.settings], ...),  # type: ignore[valid-type]
    )


def _section(kind: ConnectorKind) -> tuple[Any, Any]:
    """(annotation, default) of `connectors.<kind>`."""
    if kind.seed_instance is None:
        named = Annotated[dict[InstanceName, kind.settings],  # type: ignore[valid-type]
                          Field(description=f"{kind.summary} A mapping `<instance>: settings`.")]
        return named, {}
    union = Annotated[
        Annotated[kind.settings, Tag(SINGLE)] | Annotated[_named_model(kind), Tag(NAMED)],
        Discriminator(_form),
        Field(description=f"{kind.summary} One instance (`{kind.seed_instance}`), or `instances:` for several."),
    ]
    return union, kind.settings()


def _unique_names(self: BaseModel) -> BaseModel:
    seen: dict[str, str] = {}
    for instance in section_instances(self):
        if instance.name in KINDS:
            # `sandbox.limits.<kind>` means every instance of a kind: the name must mean one thing.
            raise ValueError(f"{instance.key}: an instance may not be named after a connector kind "
                             f"({', '.join(KINDS)})")
        if instance.name in seen:
            raise ValueError(f"instance name {instance.name!r} is used by {seen[instance.name]} and by "
                             f"{instance.key}: instance names are tool prefixes and must be unique")
        seen[instance.name] = instance.key
    return self


def connectors_model() -> type[BaseModel]:
    return create_model(
        "ConnectorsSettings",
        __base__=Strict,
        __doc__="What the tools reach, one key per connector kind.",
        __validators__={"_unique": model_validator(mode="after")(_unique_names)},
        **{name: _section(kind) for name, kind in KINDS.items()},  # type: ignore[arg-type]
    )


def section_instances(connectors: BaseModel) -> list[Instance]:
    """Every instance the (validated) connectors section configures, enabled or not."""
    out = []
    for name, kind in KINDS.items():
        section = getattr(connectors, name)
        if isinstance(section, dict):
            named = section
        elif hasattr(section, "instances"):
            named = section.instances
        else:
            out.append(Instance(str(kind.seed_instance), name, section, f"connectors.{name}"))
            continue
        prefix = f"connectors.{name}" + ("" if kind.seed_instance is None else ".instances")
        out += [Instance(n, name, s, f"{prefix}.{n}") for n, s in named.items()]
    return out


def configured_instances(raw: Any) -> dict[str, str]:
    """Instance name -> kind, read from the raw (not yet validated) config, so that policy
    entries can be checked while the config is validated."""
    connectors = raw.get("connectors") if isinstance(raw, dict) else None
    if not isinstance(connectors, dict):
        connectors = {}
    out: dict[str, str] = {}
    for name, kind in KINDS.items():
        section = connectors.get(name)
        if kind.seed_instance is None:
            names = list(section) if isinstance(section, dict) else []
        elif isinstance(section, dict) and isinstance(section.get("instances"), dict):
            names = list(section["instances"])
        else:
            names = [kind.seed_instance]
        out.update({n: name for n in names if isinstance(n, str)})
    return out


def _is_glob(tool: str) -> bool:
    return any(ch in tool for ch in "*?")


def check_tool_entry(entry: str, info: ValidationInfo) -> str:
    """A policy entry names a configured instance, and, when exact, one of its static tools."""
    instances: dict[str, str] | None = (info.context or {}).get("instances")
    if instances is None:  # validated outside a whole config: nothing to check against
        return entry
    prefix, _, tool = entry.partition(".")
    kind_name = instances.get(prefix)
    if kind_name is None:
        known = ", ".join(sorted(instances)) or "none"
        raise ValueError(f"{entry!r} names no configured instance (tools are <instance>.<tool>; the instances "
                         f"are {known})")
    kind = KINDS[kind_name]
    names = [spec.tool for spec in kind.static_tools]
    if kind.discovers_tools:
        return entry
    if _is_glob(tool):
        if not fnmatch.filter(names, tool):
            raise ValueError(f"{entry!r} matches no tool of instance {prefix} (its tools: {', '.join(names)})")
        return entry
    if tool not in names:
        raise ValueError(f"{entry!r}: instance {prefix} ({kind_name}) has no tool {tool!r} (its tools: "
                         f"{', '.join(f'{prefix}.{n}' for n in names)})")
    return entry


def matches(pattern: str, tool: str) -> bool:
    """Whether a policy entry (a name or a glob) covers the full tool name `tool`."""
    return pattern == tool or (_is_glob(pattern) and fnmatch.fnmatchcase(tool, pattern))
