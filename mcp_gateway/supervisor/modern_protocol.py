"""What the gateway adds to the SDK for protocol revision 2026-07-28 ("modern" in the SDK).

The SDK (mcp 2.3) already serves the revision on both transports: `server/discover`,
`resultType`, the `_meta` envelope, and on HTTP the `Mcp-Method`/`Mcp-Name` headers checked
against the body (`HeaderMismatch`, -32020). Two things are the gateway's own:

- **Caching hints**: `tools/list` and `server/discover` are answered per actor (policy filters
  the tools), so their results say `cacheScope: private` and `ttlMs: 0`, explicitly rather than
  by the SDK's default: a shared cache must never hand one actor's tool list to another, and a
  pinned tool withheld after a change must disappear at once.
- **Ambiguous JSON keys**: a message with a duplicate key, or two keys that differ only in case
  (`name` / `Name`), at any depth, is refused before anything reads it. Parsers disagree on
  such objects (first copy, last copy, case-insensitive match), so a proxy, a header check or
  an audit reader could see another method, tool or argument than the one the gateway runs.
  This holds for every message and every protocol version, on both transports.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.caching import CacheHint

INVALID_REQUEST = -32600
log = logging.getLogger("mcp_gateway")

LIST_CACHE_HINTS = {
    "tools/list": CacheHint(ttl_ms=0, scope="private"),
    "server/discover": CacheHint(ttl_ms=0, scope="private"),
}


class _AmbiguousKey(Exception):
    def __init__(self, first: str, second: str) -> None:
        self.keys = (first, second)


def _unambiguous_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        folded = key.casefold()
        if folded in seen:
            raise _AmbiguousKey(seen[folded], key)
        seen[folded] = key
    return dict(pairs)


def ambiguous_keys(raw: bytes | str) -> tuple[str, str] | None:
    """The first pair of keys that make an object of `raw` ambiguous, or None.

    None too when `raw` is not JSON at all: refusing that is the transport's job (-32700).
    """
    try:
        json.loads(raw, object_pairs_hook=_unambiguous_object)
    except _AmbiguousKey as e:
        return e.keys
    except (ValueError, RecursionError):
        return None
    return None


class _Pairs(list):
    pass


def _top_level_id(raw: bytes | str) -> Any:
    """The message's id for the error, when the top level is an object with exactly one (else null)."""
    try:
        obj = json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, _Pairs):
        return None
    ids = [v for k, v in obj if k.casefold() == "id"]
    if len(ids) == 1 and type(ids[0]) in (str, int):
        return ids[0]
    return None


def refusal(raw: bytes | str) -> bytes | None:
    """The JSON-RPC error (-32600) for a message with ambiguous keys, or None if it has none."""
    keys = ambiguous_keys(raw)
    if keys is None:
        return None
    first, second = keys
    what = f"duplicate key {first!r}" if first == second else f"keys {first!r} and {second!r} differ only in case"
    request_id = _top_level_id(raw)
    # Not a tool call (nothing was read), so no audit line: the operator learns of it here.
    log.warning("refused a JSON-RPC message (id %r) with ambiguous keys: %s", request_id, what)
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": INVALID_REQUEST,
        "message": f"Invalid Request: {what}; every key must appear once, in one spelling"}}).encode()
