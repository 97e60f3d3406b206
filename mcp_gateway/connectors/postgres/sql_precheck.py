"""The supervisor's part of the db.query guard: bounded, linear in the input, no parser.

The full check (connectors/postgres/sql.py, with sqlglot and the server's catalog) runs in the postgres
worker, under the call's deadline; this module keeps sqlglot out of the supervisor too.
"""

from __future__ import annotations

import re

from mcp_gateway.guards import GuardDenied

__all__ = ["MAX_SQL_CHARS", "REFUSED_LEADING", "precheck_sql"]

_WS = " \t\n\r\f"

# Statements sqlglot might parse into something innocent-looking (LISTEN ch -> an alias,
# CHECKPOINT -> a column): refused on their first word before sqlglot is asked.
REFUSED_LEADING = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "UPSERT",
        "REPLACE",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COMMENT",
        "SECURITY",
        "REASSIGN",
        "REFRESH",
        "REINDEX",
        "CLUSTER",
        "VACUUM",
        "ANALYZE",
        "ANALYSE",
        "CHECKPOINT",
        "COPY",
        "DO",
        "CALL",
        "PREPARE",
        "EXECUTE",
        "DEALLOCATE",
        "LISTEN",
        "UNLISTEN",
        "NOTIFY",
        "LOCK",
        "SET",
        "RESET",
        "SHOW",
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "DECLARE",
        "FETCH",
        "MOVE",
        "CLOSE",
        "DISCARD",
        "LOAD",
        "IMPORT",
        "EXPLAIN",
        "USE",
        "DESCRIBE",
        "PRAGMA",
    }
)

#: The longest statement db.query takes (the tool's argument schema says the same).
MAX_SQL_CHARS = 100_000

_LEADING_WORD = re.compile(r"[A-Za-z_]+")


def precheck_sql(sql: str) -> None:
    """The supervisor's check: bounded and linear in the input, it never parses. It refuses
    an oversized statement and one whose first word (after comments and parentheses) is a
    statement other than a query. The worker's prepare_sql is the real check."""
    if len(sql) > MAX_SQL_CHARS:
        raise GuardDenied(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in _WS or c == "(":
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while depth and i < n:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    m = _LEADING_WORD.match(sql, i)
    word = m.group().upper() if m else ""
    if word in REFUSED_LEADING and word != "EXPLAIN":
        raise GuardDenied(f'SQL keyword "{word}" is not allowed')
