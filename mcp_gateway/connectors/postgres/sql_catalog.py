"""What db.query may name, decided by PostgreSQL's own catalog (read by the worker at connect).

The guard never asks "is this name bad?". It asks the server which names it could resolve as
a function, an operator, a cast/type or a system relation, and refuses every one of those that
is not allowed here:

- **functions** (``pg_proc``): a system function (``pg_catalog`` / ``information_schema``) is
  allowed when the catalog marks it immutable or stable, or it is on the short reviewed list
  of harmless volatile ones (:data:`HARMLESS_VOLATILE`), and it is not one of the stable ones
  that still reach outside the query (:data:`REACHING_OUT`: settings, other sessions, relations
  or queries named by an argument, server files, transaction ids). A function in any other
  schema runs only if the operator lists it (``connectors.postgres.allow_functions``). A name
  is allowed only when *every* function of that name, in every schema and overload, is.
- **operators** (``pg_operator.oprcode``) and **casts / types** (``pg_cast.castfunc`` and the
  type's I/O functions): refused when the function behind them is not allowed.
- **relations**: the database's own schemas, plus :data:`SYSTEM_RELATIONS` (catalog views an
  analyst uses for introspection) and ``connectors.postgres.allow_relations``. Every other
  relation of a system schema is refused, qualified or not (unqualified names resolve through
  ``pg_catalog`` first).

``current_setting`` is refused in general (database- and role-level settings can hold secrets)
but allowed when its first argument is a string literal naming one of :data:`READABLE_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HARMLESS_VOLATILE",
    "READABLE_SETTINGS",
    "REACHING_OUT",
    "REACHING_OUT_PREFIXES",
    "SYSTEM_RELATIONS",
    "SYSTEM_SCHEMAS",
    "SqlCatalog",
    "function_allowed",
    "load_catalog",
]

#: Schemas whose functions are judged by volatility; functions elsewhere need the operator's word.
SYSTEM_SCHEMAS: frozenset[str] = frozenset({"pg_catalog", "information_schema"})

#: Volatile system functions that read nothing outside the query and change nothing.
HARMLESS_VOLATILE: frozenset[str] = frozenset(
    {
        "random",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "currval",  # this session's own sequence state
        "lastval",
        "current_query",  # the caller's own statement
        "pg_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_total_relation_size",
        "pg_database_size",
        "pg_tablespace_size",
        "pg_is_in_recovery",
        "pg_jit_available",
        "pg_partition_tree",
        "pg_partition_ancestors",
        "bernoulli",  # TABLESAMPLE methods (take an internal argument, not callable by hand)
        "system",
    }
)

#: Stable (or immutable) system functions that still reach outside the query.
REACHING_OUT: frozenset[str] = frozenset(
    {
        "current_setting",  # settings can hold secrets (see READABLE_SETTINGS)
        "pg_show_all_settings",
        "pg_settings_get_flags",
        "pg_get_replication_slots",
        "pg_config",
        "pg_tablespace_location",
        "pg_relation_filepath",
        "pg_current_xact_id",  # assigns a transaction id (the counter outlives the query)
        "txid_current",
        "pg_mcv_list_items",  # statistics values (pg_statistic_ext_data)
        "pg_listening_channels",
        "pg_cursor",
        "pg_prepared_statement",
        "pg_blocking_pids",
        "pg_safe_snapshot_blocking_pids",
        "inet_server_addr",  # network addresses of the connection's two ends
        "inet_server_port",
        "inet_client_addr",
        "inet_client_port",
    }
)

#: Families refused by name shape: other sessions' activity and statistics, files, and the
#: *_to_xml* functions that run a query or read a relation/schema/database named by argument.
REACHING_OUT_PREFIXES: tuple[str, ...] = ("pg_stat_", "pg_ls_", "pg_read_", "pg_file")
REACHING_OUT_INFIXES: tuple[str, ...] = ("_to_xml",)

#: Settings current_setting('...') may read (lower case): formatting and version facts.
READABLE_SETTINGS: frozenset[str] = frozenset(
    {
        "timezone",
        "datestyle",
        "intervalstyle",
        "server_version",
        "server_version_num",
        "server_encoding",
        "client_encoding",
        "lc_collate",
        "lc_ctype",
        "lc_messages",
        "lc_monetary",
        "lc_numeric",
        "lc_time",
        "standard_conforming_strings",
        "integer_datetimes",
        "block_size",
        "max_identifier_length",
        "extra_float_digits",
        "default_text_search_config",
        "transaction_read_only",
        "transaction_isolation",
        "statement_timeout",
        "search_path",
    }
)

#: Catalog relations an analyst may read (schema, name): structure, never secrets or sessions.
SYSTEM_RELATIONS: frozenset[tuple[str, str]] = frozenset(
    [
        ("pg_catalog", n)
        for n in (
            "pg_class",
            "pg_namespace",
            "pg_attribute",
            "pg_attrdef",
            "pg_type",
            "pg_constraint",
            "pg_index",
            "pg_indexes",
            "pg_tables",
            "pg_views",
            "pg_matviews",
            "pg_sequence",
            "pg_sequences",
            "pg_database",
            "pg_am",
            "pg_description",
            "pg_enum",
            "pg_inherits",
            "pg_collation",
            "pg_extension",
            "pg_range",
            "pg_operator",
            "pg_proc",
            "pg_aggregate",
            "pg_language",
            "pg_trigger",
            "pg_depend",
            "pg_cast",
            "pg_opclass",
            "pg_opfamily",
            "pg_rewrite",
            "pg_policy",
            "pg_policies",
            "pg_partitioned_table",
            "pg_tablespace",
            "pg_conversion",
            "pg_ts_config",
            "pg_ts_dict",
            "pg_timezone_names",
            "pg_timezone_abbrevs",
        )
    ]
    + [
        ("information_schema", n)
        for n in (
            "tables",
            "columns",
            "views",
            "schemata",
            "table_constraints",
            "key_column_usage",
            "constraint_column_usage",
            "referential_constraints",
            "check_constraints",
            "sequences",
            "routines",
            "parameters",
            "element_types",
            "domains",
            "domain_constraints",
            "view_table_usage",
            "view_column_usage",
            "triggers",
            "table_privileges",
            "column_privileges",
        )
    ]
)


def function_allowed(schema: str, name: str, volatility: str, allow_functions: Iterable[str] = ()) -> bool:
    """One pg_proc row: may it run?"""
    allow = set(allow_functions)
    if name in allow or f"{schema}.{name}" in allow:
        return True
    if schema not in SYSTEM_SCHEMAS:
        return False
    if (
        name in REACHING_OUT
        or name.startswith(REACHING_OUT_PREFIXES)
        or any(i in name for i in REACHING_OUT_INFIXES)
    ):
        return False
    return volatility in ("i", "s") or name in HARMLESS_VOLATILE


@dataclass(frozen=True, slots=True)
class SqlCatalog:
    """Names PostgreSQL may resolve that db.query refuses (exact case, as the server compares),
    and the function names it may call."""

    functions: frozenset[str]
    #: function names whose every pg_proc row may run (a call by any other name is refused)
    callable: frozenset[str]
    operators: frozenset[str]
    types: frozenset[str]
    #: unqualified relation names that resolve to a system relation not allowed here
    relations: frozenset[str]
    #: schemas whose relations are refused unless in `allowed_relations`
    system_schemas: frozenset[str]
    allowed_relations: frozenset[tuple[str, str]]
    #: PostgreSQL truncates longer identifiers to this many bytes (NAMEDATALEN - 1)
    max_identifier_length: int = 63
    #: every type name (pg_type.typname): ``box '...'`` is a typed literal
    type_names: frozenset[str] = frozenset()


_FUNCTIONS_SQL = """
SELECT n.nspname, p.proname, p.provolatile
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
"""

_OPERATORS_SQL = """
SELECT o.oprname, n.nspname, p.proname, p.provolatile
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
"""

# A type is refused when a cast to it, or one of its I/O functions, may not run.
_TYPES_SQL = """
SELECT t.typname, n.nspname, p.proname, p.provolatile
FROM pg_catalog.pg_cast c
JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
UNION ALL
SELECT t.typname, n.nspname, p.proname, p.provolatile
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_proc p
  ON p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout, t.typsubscript)
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
"""

# System schemas: the fixed ones, pg_toast, and every system schema on the effective
# search_path (pg_catalog is always searched first, even when not listed).
_RELATIONS_SQL = """
SELECT n.nspname, c.relname, n.nspname = ANY (pg_catalog.current_schemas(true))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema')
"""


def load_catalog(
    cur: Any, *, allow_functions: Iterable[str] = (), allow_relations: Iterable[str] = ()
) -> SqlCatalog:
    """Read the allowlists' inputs through a DB-API cursor (one short read-only query each)."""
    allow_f = tuple(allow_functions)

    def refused(rows: Iterable[tuple[Any, ...]]) -> frozenset[str]:
        return frozenset(
            key for key, nsp, name, vol in rows if not function_allowed(nsp, name, vol, allow_f)
        )

    cur.execute(_FUNCTIONS_SQL)
    rows = cur.fetchall()
    functions = refused((name, nsp, name, vol) for nsp, name, vol in rows)
    callable_ = frozenset(name for _nsp, name, _vol in rows) - functions
    cur.execute(_OPERATORS_SQL)
    operators = refused(cur.fetchall())
    cur.execute(_TYPES_SQL)
    types = refused(cur.fetchall())
    allowed = set(SYSTEM_RELATIONS)
    for item in allow_relations:
        schema, _, name = item.rpartition(".")
        allowed.add((schema or "pg_catalog", name))
    cur.execute("SELECT typname FROM pg_catalog.pg_type")
    type_names = frozenset(name for (name,) in cur.fetchall())
    cur.execute("SELECT pg_catalog.current_setting('max_identifier_length')::int")
    max_identifier_length = cur.fetchone()[0]
    cur.execute(_RELATIONS_SQL)
    relations = frozenset(
        name for nsp, name, on_path in cur.fetchall() if on_path and (nsp, name) not in allowed
    )
    return SqlCatalog(
        functions=functions,
        callable=callable_,
        operators=operators,
        types=types,
        relations=relations,
        system_schemas=frozenset({"pg_catalog", "information_schema", "pg_toast"}),
        allowed_relations=frozenset(allowed),
        max_identifier_length=max_identifier_length,
        type_names=type_names,
    )
