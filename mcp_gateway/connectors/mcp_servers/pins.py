"""Tool-definition pinning: the definitions an operator approved, and the check against them.

The pin file of an instance (`pin_file`, default `<config dir>/mcp-pins/<instance>.json`) holds,
per upstream tool name, the sha256 of its definition's canonical JSON and the definition itself
(so a change can be shown as a diff). `mcp-gateway approve-tools` writes it; the gateway only
reads it. With `pin_tools: true`, a listed tool is offered only when its digest is the pinned
one: a changed tool and a tool never approved are withheld and their calls refused.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mcp_gateway.connectors.mcp_servers.discovery import UpstreamTool, digest_of

log = logging.getLogger("mcp_gateway.upstream")

PIN_FILE_VERSION = 1
MAX_PIN_FILE_BYTES = 16 * 1024 * 1024
MAX_DIFF_LINES = 200


class PinFileError(Exception):
    pass


class _Pinned(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sha256: str
    definition: dict[str, Any]


class _PinFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    version: int
    instance: str
    tools: dict[str, _Pinned]


def pin_path(instance: str, pin_file: Path | None, config_dir: Path) -> Path:
    if pin_file is None:
        return config_dir / "mcp-pins" / f"{instance}.json"
    return pin_file if pin_file.is_absolute() else config_dir / pin_file


def load_pins(path: Path, instance: str) -> dict[str, _Pinned]:
    """The approved definitions by upstream tool name; {} when nothing was approved yet."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PIN_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise PinFileError(f"{path}: cannot read the pin file: {e.strerror}") from None
    if len(data) > MAX_PIN_FILE_BYTES:
        raise PinFileError(f"{path}: larger than {MAX_PIN_FILE_BYTES} bytes: not a pin file")
    try:
        pins = msgspec.json.decode(data, type=_PinFile)
    except msgspec.DecodeError as e:
        raise PinFileError(f"{path}: not a pin file ({e})") from None
    if pins.version != PIN_FILE_VERSION or pins.instance != instance:
        raise PinFileError(f"{path}: a pin file of version {pins.version} for instance {pins.instance!r}; expected "
                           f"version {PIN_FILE_VERSION} for {instance!r}")
    for name, pinned in pins.tools.items():
        if digest_of(pinned.definition) != pinned.sha256:
            raise PinFileError(f"{path}: the entry of {name!r} does not match its own sha256 (edited by hand?); "
                               "approve the tools again")
    return dict(pins.tools)


def write_pins(path: Path, instance: str, tools: list[UpstreamTool]) -> None:
    """Replace the pin file atomically (a reader sees the old file or the new one, never half)."""
    pins = _PinFile(PIN_FILE_VERSION, instance,
                    {t.upstream_name: _Pinned(t.digest, t.definition) for t in tools})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(pins), indent=2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def definition_diff(old: dict[str, Any], new: dict[str, Any], name: str) -> str:
    """A unified diff of two definitions, as pretty JSON, capped."""
    def lines(d: dict[str, Any]) -> list[str]:
        return json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    diff = list(difflib.unified_diff(lines(old), lines(new), f"{name} (approved)", f"{name} (now)", lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... ({len(diff) - MAX_DIFF_LINES} more lines)"]
    return "\n".join(diff)


@dataclass
class PinCheck:
    """The pin rule of one instance; remembers what it already reported, so a server that keeps
    re-listing the same change logs it once."""

    instance: str
    path: Path
    changes: int = 0  # tool definitions seen to differ from their approval (the metric)
    _reported: set[tuple[str, str]] = field(default_factory=set)

    def split(self, tools: list[UpstreamTool]) -> tuple[list[UpstreamTool], dict[str, str]]:
        """(tools that match their approval, {full name: why withheld} for the others)."""
        try:
            pins = load_pins(self.path, self.instance)
        except PinFileError as e:
            log.error("upstream %s: %s; every tool is withheld until it is fixed", self.instance, e)
            return [], {t.name: f"the pin file cannot be read ({e})" for t in tools}
        approved: list[UpstreamTool] = []
        withheld: dict[str, str] = {}
        for tool in tools:
            pinned = pins.get(tool.upstream_name)
            if pinned is not None and pinned.sha256 == tool.digest:
                approved.append(tool)
            elif pinned is None:
                withheld[tool.name] = ("a new tool, not approved yet (pin_tools): an operator runs "
                                       "`mcp-gateway approve-tools`")
                self._report(tool, "is new and not approved; it is withheld until `mcp-gateway approve-tools`", None)
            else:
                withheld[tool.name] = ("its definition changed since it was approved (pin_tools): an operator "
                                       "reviews the change and runs `mcp-gateway approve-tools`")
                self._report(tool, "changed since it was approved; it is withheld until approved again",
                             definition_diff(pinned.definition, tool.definition, tool.name))
        return approved, withheld

    def _report(self, tool: UpstreamTool, what: str, diff: str | None) -> None:
        key = (tool.name, tool.digest)
        if key in self._reported:
            return
        self._reported.add(key)
        if diff is None:
            log.warning("SECURITY: upstream tool %s %s (sha256 %s)", tool.name, what, tool.digest)
            return
        self.changes += 1
        log.warning("SECURITY: upstream tool %s %s (sha256 %s):\n%s", tool.name, what, tool.digest, diff)
