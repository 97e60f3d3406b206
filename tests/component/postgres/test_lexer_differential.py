"""The guard's lexer against PostgreSQL's: what the guard accepts as one statement is one
statement to PostgreSQL, and the normalised text it executes means the same as the original."""

from __future__ import annotations

import psycopg
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_gateway.connectors.postgres.sql import prepare_sql
from mcp_gateway.connectors.postgres.tools import QueryArgs
from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import Refusal
from tests.component.postgres.conftest import LIMITS

_FRAGMENTS = [
    "SELECT 1",
    "SELECT 2",
    "SELECT 'a;b'",
    "SELECT E'\\';'",
    "SELECT E'\\\\'",
    "SELECT $$;$$",
    "SELECT $t$ $$; $t$",
    "SELECT U&'\\0041;'",
    "SELECT 'x'\n';y'",
    "/* ; /* ; */ ; */",
    "/* ' */",
    "-- ;\n",
    "-- '\n",
    ";",
    " ",
    "\n",
    "'",
    "''",
    "E'\\'",
    "$$",
    "$t$",
    "/*",
    "*/",
    ", ';'",
    ", 1",
    ", E'\\''",
    '"a;b"',
    ', "x"',
    ' AS ";"',
]


@pytest.fixture(scope="module")
def admin(pg_cluster):
    conn = psycopg.connect(autocommit=True, **pg_cluster.conninfo())
    yield conn
    conn.close()


def _run_original(admin, text: str):
    """Result sets PostgreSQL produces for the original text (simple query protocol, in a
    read-only transaction that is rolled back), or None if it is an error."""
    results = []
    try:
        admin.execute("BEGIN READ ONLY")
        with admin.cursor() as cur:
            cur.execute(text.encode("utf-8"))
            while True:
                if cur.description is not None:
                    results.append(cur.fetchall())
                else:
                    results.append(None)
                if not cur.nextset():
                    break
    except psycopg.Error:
        return None
    finally:
        admin.execute("ROLLBACK")
    return results


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=6))
def test_one_statement_for_postgres_too(admin, connector, sql_catalog, frags):
    text = "".join(frags)
    try:
        checked = prepare_sql(text, sql_catalog)
    except GuardDenied:
        return
    original = _run_original(admin, text)
    if original is None:  # PostgreSQL refuses it too (e.g. 'a' 'b')
        return
    statements = [r for r in original if r is not None]
    assert len(original) == 1 and len(statements) == 1, (text, checked.text, original)
    try:
        res = connector.call("query", QueryArgs(sql=text), LIMITS)
    except Refusal as e:
        pytest.fail(f"{text!r} ran in PostgreSQL but not through the connector: {e}")
    assert [list(r) for r in statements[0]] == res["rows"], (text, checked.text)


def _e_escape(ch: str, how: int) -> str:
    cp = ord(ch)
    if ch == "'":
        return "\\'" if how % 2 else "''"
    if ch == "\\":
        return "\\\\"
    if how == 0 or cp == 0:
        return ch
    if how == 1 and cp < 0x10000:
        return f"\\u{cp:04x}"
    if how == 2:
        return f"\\U{cp:08x}"
    if how == 3 and cp < 0x80:
        return f"\\{cp:03o}"
    if how == 4 and cp < 0x80:
        return f"\\x{cp:02x}"
    return ch


_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",), max_codepoint=0x1F64F),
    max_size=30,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_TEXT, hows=st.lists(st.integers(0, 4), min_size=30, max_size=30), form=st.integers(0, 4))
def test_literals_mean_the_same(admin, connector, sql_catalog, value, hows, form):
    if form == 0:
        lit = "'" + value.replace("'", "''") + "'"
    elif form == 1:
        lit = "E'" + "".join(_e_escape(c, hows[i % 30]) for i, c in enumerate(value)) + "'"
    elif form == 2:
        lit = (
            "U&'"
            + "".join(
                "''" if c == "'" else ("\\\\" if c == "\\" else (f"\\+{ord(c):06x}" if hows[i % 30] else c))
                for i, c in enumerate(value)
            )
            + "'"
        )  # noqa: E501
    elif form == 3:
        if "$q$" in value or value.endswith("$") or value.endswith("$q"):
            return
        lit = f"$q${value}$q$"
    else:
        half = len(value) // 2
        a, b = value[:half], value[half:]
        lit = "'" + a.replace("'", "''") + "'\n  -- c\n'" + b.replace("'", "''") + "'"
    sql = f"SELECT {lit} AS v"
    checked = prepare_sql(sql, sql_catalog)
    # sqlglot sees the literal with exactly PostgreSQL's value
    tree = sqlglot.parse(checked.text, read="postgres")[0]
    lits = list(tree.find_all(sqlglot.exp.Literal))
    assert len(lits) == 1 and lits[0].this == value
    original = _run_original(admin, sql)
    assert original is not None and original[0] == [(value,)], (sql, original)
    assert connector.call("query", QueryArgs(sql=sql), LIMITS)["rows"] == [[value]]
