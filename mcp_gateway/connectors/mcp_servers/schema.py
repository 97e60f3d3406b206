"""JSON Schema checks of an upstream tool's arguments and structured results, at bounded cost.

The schemas come from the upstream server, the arguments from the agent: both are hostile,
and the check runs in the supervisor. So:
- a schema is accepted only when small and shallow (`check_shape`), of a draft the validator
  knows (6, 7, 2019-09, 2020-12), and never fetches anything (`$ref` resolves inside the
  schema only: an empty registry that retrieves nothing);
- regular expressions (`pattern`, `patternProperties`, and `additionalProperties` beside
  them) run on RE2, whose matching time is linear in the input: a backtracking engine would
  let a hostile pattern stall the supervisor. A pattern RE2 cannot compile (lookaround,
  backreferences) is left to the server's own check, and discovery logs it;
- `$ref` must point inside the schema (`#...`): a schema is self-contained or refused;
- one validation may evaluate at most VALIDATION_BUDGET keywords (`anyOf` over a recursive
  `$ref` is exponential in the input's depth otherwise); past it the arguments are refused.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import msgspec
import re2
from jsonschema import Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

MAX_SCHEMA_BYTES = 256 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 20_000
# About 25 µs of CPU per keyword: at most ~2.5 s for the costliest arguments, run off the event
# loop (backend.py), where legitimate arguments of a few hundred values take a few hundred steps.
VALIDATION_BUDGET = 100_000
_KNOWN_DRAFTS = (Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator)
# Keyword that jsonschema evaluates with Python's backtracking `re` beside patternProperties
# and that is not replaced here: a schema combining them is refused.
_UNREPLACED_WITH_PATTERNS = "unevaluatedProperties"


class SchemaRefused(Exception):
    """The server's schema cannot be used (too big, too deep, unknown draft, invalid)."""


class ArgumentsRefused(Exception):
    """The arguments do not match the schema (or cost too much to check)."""


def check_shape(schema: Any, what: str) -> None:
    """Refuse a schema beyond the size, depth and node caps (iteratively: no recursion)."""
    if not isinstance(schema, dict):
        raise SchemaRefused(f"{what} is not a JSON object")
    if len(msgspec.json.encode(schema)) > MAX_SCHEMA_BYTES:
        raise SchemaRefused(f"{what} is larger than {MAX_SCHEMA_BYTES} bytes")
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise SchemaRefused(f"{what} has more than {MAX_SCHEMA_NODES} nodes")
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaRefused(f"{what} is nested more than {MAX_SCHEMA_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _keys(schema: Any) -> Iterator[tuple[str, Any]]:
    stack = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
            yield from value.items()
        elif isinstance(value, list):
            stack.extend(value)


# --- linear-time patterns -----------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    """The RE2 program of `pattern`, or None when RE2 does not support its syntax."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error:
        return None


def unsupported_patterns(schema: dict[str, Any]) -> list[str]:
    """Patterns of the schema the gateway cannot check (left to the server)."""
    found: list[str] = []
    for key, value in _keys(schema):
        if key == "pattern" and isinstance(value, str):
            found.append(value)
        elif key == "patternProperties" and isinstance(value, dict):
            found.extend(p for p in value if isinstance(p, str))
    return [p for p in dict.fromkeys(found) if _compiled(p) is None]


def _search(pattern: str, text: str) -> bool:
    program = _compiled(pattern)
    return True if program is None else program.search(text) is not None


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{_clip(instance)!r} does not match {_clip(pattern)!r}")


def _pattern_properties(validator: Validator, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Validator, additional: Any, instance: Any,
                           schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance if k not in known and not any(_search(p, k) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        yield ValidationError(f"unexpected properties: {', '.join(repr(_clip(e)) for e in sorted(extras)[:10])}")


def _clip(text: str) -> str:
    return text if len(text) <= 100 else text[:100] + "..."


# --- the budget ---------------------------------------------------------------------------

_spent: contextvars.ContextVar[list[int]] = contextvars.ContextVar("schema_budget")


class _OverBudget(Exception):
    pass


def _counted(keyword: Any) -> Any:
    def check(validator: Validator, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        spent = _spent.get()
        spent[0] += 1
        if spent[0] > VALIDATION_BUDGET:
            raise _OverBudget
        yield from keyword(validator, value, instance, schema) or ()
    return check


@functools.cache
def _bounded(base: type[Validator]) -> type[Validator]:
    keywords = dict(base.VALIDATORS)
    keywords.update(pattern=_pattern, patternProperties=_pattern_properties,
                    additionalProperties=_additional_properties)
    return jsonschema.validators.extend(base, {k: _counted(v) for k, v in keywords.items()})


_NO_RETRIEVAL: Registry = Registry()  # no retrieve function: an unknown $ref is an error, never a fetch


class SchemaCheck:
    """A compiled, bounded check of one schema."""

    def __init__(self, schema: dict[str, Any], what: str) -> None:
        check_shape(schema, what)
        base = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
        if base not in _KNOWN_DRAFTS:
            raise SchemaRefused(f"{what} uses a JSON Schema draft the gateway does not check ({base.__name__})")
        keys = {k for k, _ in _keys(schema)}
        outside = [v for k, v in _keys(schema) if k in ("$ref", "$dynamicRef") and not str(v).startswith("#")]
        if outside:
            raise SchemaRefused(f"{what} refers outside itself ($ref {_clip(str(outside[0]))!r}); the gateway "
                                "fetches nothing")
        if "patternProperties" in keys and _UNREPLACED_WITH_PATTERNS in keys:
            raise SchemaRefused(f"{what} combines patternProperties with unevaluatedProperties, which the "
                                "gateway cannot check in linear time")
        try:
            base.check_schema(schema)
        except SchemaError as e:
            raise SchemaRefused(f"{what} is not a valid JSON Schema: {_clip(e.message)}") from None
        self._validator = _bounded(base)(schema, registry=_NO_RETRIEVAL)

    def first_error(self, instance: Any) -> str | None:
        """Why `instance` does not match, or None when it does."""
        token = _spent.set([0])
        try:
            error = next(iter(self._validator.iter_errors(instance)), None)
        except _OverBudget:
            return f"too costly to check against the tool's schema (over {VALIDATION_BUDGET} steps)"
        except Unresolvable:
            return "cannot be checked against the tool's schema (one of its $ref does not resolve)"
        except RecursionError:
            return "too deeply nested to check against the tool's schema"
        finally:
            _spent.reset(token)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        text = error.message if len(error.message) <= 200 else (
            f"the value fails the schema's `{error.validator}` rule ({_clip(repr(error.validator_value))})")
        return f"{'at ' + where + ': ' if where else ''}{text}"
