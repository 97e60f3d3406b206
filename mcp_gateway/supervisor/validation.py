"""Strict decoding of untrusted tool arguments into the catalogue's structs.

No coercion (a number is not a string), no unknown fields, every string capped (each kind's
structs carry their own caps and checks), and text that cannot be encoded (lone surrogates)
is refused.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mcp_gateway.connectors.base import Args, ToolSpec
from mcp_gateway.ipc.errors import ErrorCode, Refusal


def _check_encodable(value: Any, where: str = "arguments") -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refusal(ErrorCode.VALIDATION_ERROR,
                          f"{where} contains text that is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_encodable(k, where)
            _check_encodable(v, f"{where}.{k}" if isinstance(k, str) else where)
    elif isinstance(value, list):
        for v in value:
            _check_encodable(v, where)


def decode_arguments(spec: ToolSpec, arguments: dict[str, Any] | None) -> Args | None:
    """The arguments as the tool's struct, or Refusal(VALIDATION_ERROR) naming what is wrong.
    None for a discovered tool: its backend checks them against the tool's own schema."""
    raw = {} if arguments is None else arguments
    _check_encodable(raw)
    if spec.args_type is None:
        return None
    try:
        args = msgspec.convert(raw, spec.args_type, strict=True)
    except msgspec.ValidationError as e:
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"invalid arguments for {spec.name}: {e}") from None
    return args
