"""Settings of one filesystem instance (`connectors.filesystem`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationInfo, field_validator, model_validator

from mcp_gateway.connectors.base import WorkerPoolSettings


class FilesystemSettings(WorkerPoolSettings):
    # docs/CONFIG.md: (description, example) per key (scripts/gen_config_doc.py).
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": (
            "Serve the instance's tools, `<instance>.readFile` and `<instance>.listDir` (`fs.readFile` "
            "and `fs.listDir` in the single-object form).", True),
        "allowed_paths": (
            "Directories served read-only (relative paths resolve against the config file's directory). "
            "Relative tool paths resolve against the first one. Each must exist and be readable by the worker "
            "identity when the gateway starts (checked by `serve`, `check-config`, `doctor`).", ['/data']),
        "denied_paths": (
            "Directories or files under the allowed paths that are refused. Each must exist at start (a "
            "denied path that names nothing is most likely a typo).", ['/data/secrets']),
        "cross_mounts": (
            "Let lookups cross mount points inside an allowed root (bind mounts, overlays, volumes). Off "
            "(default): such paths are refused (`RESOLVE_NO_XDEV`). On: a mount of a denied directory itself "
            "is still refused, a mount showing part of one is not; see "
            "[FILESYSTEM.md](FILESYSTEM.md#mount-points).", True),
    }

    enabled: bool = False
    allowed_paths: list[Path] = []
    denied_paths: list[Path] = []
    # Follow lookups across mount points inside an allowed root (bind mounts, overlays,
    # volumes). Off: such a path is refused (RESOLVE_NO_XDEV). On: a denied directory is then
    # still recognised when mounted itself, not when a mount shows only part of it
    # (docs/FILESYSTEM.md "Mount points").
    cross_mounts: bool = False

    @field_validator("allowed_paths", "denied_paths", mode="before")
    @classmethod
    def _relative_to_config(cls, v: object, info: ValidationInfo) -> object:
        # Relative paths belong to the config file's directory (the loader passes it).
        base = (info.context or {}).get("base")
        if base is None or not isinstance(v, list):
            return v
        return [str((Path(base) / p).resolve()) if isinstance(p, str) else p for p in v]

    @model_validator(mode="after")
    def _roots(self) -> FilesystemSettings:
        if self.enabled and not self.allowed_paths:
            raise ValueError("allowed_paths must list at least one directory")
        for p in (*self.allowed_paths, *self.denied_paths):
            if not p.is_absolute():
                raise ValueError(f"path {str(p)!r} must be absolute after resolution")
        return self
