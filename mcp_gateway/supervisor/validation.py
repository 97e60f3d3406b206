"""Strict decoding of untrusted tool arguments into the catalogue's structs.

No coercion (a number is not a string), no unknown fields, every string capped; a path is
also capped in UTF-8 bytes, and text that cannot be encoded (lone surrogates) is refused.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.tools import ToolSpec
from mcp_gateway.tools.arguments import PATH_MAX_BYTES, Args


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


def decode_arguments(spec: ToolSpec, arguments: dict[str, Any] | None) -> Args:
    """The arguments as the tool's struct, or Refusal(VALIDATION_ERROR) naming what is wrong."""
    raw = {} if arguments is None else arguments
    _check_encodable(raw)
    try:
        args = msgspec.convert(raw, spec.args_type, strict=True)
    except msgspec.ValidationError as e:
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"invalid arguments for {spec.name}: {e}") from None
    path = getattr(args, "path", None)
    if isinstance(path, str) and len(path.encode("utf-8")) > PATH_MAX_BYTES:
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"`path` is longer than {PATH_MAX_BYTES} bytes")
    return args
