# ruff: noqa: S608  (this file builds hostile SQL on purpose)
"""The SQL guard on its own (against the catalog of the real throwaway cluster, read as a
worker reads it at connect): corpora, reasons, lexer edge cases, every name form, properties."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.connectors.postgres import sql as sqlguard
from mcp_gateway.connectors.postgres.sql_catalog import SqlCatalog
from mcp_gateway.connectors.postgres.sql_precheck import precheck_sql
from mcp_gateway.guards import GuardDenied
from tests.component.postgres.conftest import GOOD_SQL_SQLGLOT_CANNOT_READ
from tests.support.corpus import SQL_ACCEPT, SQL_REJECT, load_corpus

ACCEPTED = load_corpus(SQL_ACCEPT)
REJECTED = load_corpus(SQL_REJECT)
CATALOG: SqlCatalog | None = None


@pytest.fixture(autouse=True, scope="module")
def _catalog(sql_catalog):
    global CATALOG
    CATALOG = sql_catalog


def prepare_sql(sql: str, **kw) -> sqlguard.CheckedSql:
    assert CATALOG is not None
    return sqlguard.prepare_sql(sql, CATALOG, **kw)


def check_sql(sql: str, **kw) -> None:
    prepare_sql(sql, **kw)


def reason(sql: str, **kw) -> str:
    with pytest.raises(GuardDenied) as ei:
        check_sql(sql, **kw)
    return ei.value.reason


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accept_corpus(sql):
    check_sql(sql)


@pytest.mark.parametrize("sql", REJECTED)
def test_reject_corpus(sql):
    assert reason(sql)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DELETE FROM users", 'SQL keyword "DELETE" is not allowed'),
        ("INSERT INTO users(id) VALUES (1)", 'SQL keyword "INSERT" is not allowed'),
        ("TRUNCATE users", 'SQL keyword "TRUNCATE" is not allowed'),
        ("/* a /* b */ SELECT 1 FROM */ TRUNCATE users", 'SQL keyword "TRUNCATE" is not allowed'),
        ("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", 'SQL keyword "DELETE" is not allowed'),
        ("SET statement_timeout = 0", 'SQL keyword "SET" is not allowed'),
        ("SHOW ALL", 'SQL keyword "SHOW" is not allowed'),
        ("LISTEN ch", 'SQL keyword "LISTEN" is not allowed'),
        ("CHECKPOINT", 'SQL keyword "CHECKPOINT" is not allowed'),
        ("VACUUM users", 'SQL keyword "VACUUM" is not allowed'),
        ("CALL p()", 'SQL keyword "CALL" is not allowed'),
        ("PREPARE p AS SELECT 1", 'SQL keyword "PREPARE" is not allowed'),
        ("NOTIFY ch", 'SQL keyword "NOTIFY" is not allowed'),
        ("BEGIN", 'SQL keyword "BEGIN" is not allowed'),
        ("COMMIT", 'SQL keyword "COMMIT" is not allowed'),
        ("(DELETE FROM users)", 'SQL keyword "DELETE" is not allowed'),
        ("SELECT * FROM pg_read_file('/etc/passwd')", 'function "pg_read_file" is not allowed'),
        ("SELECT \"pg_read_file\"('/etc/passwd')", 'function "pg_read_file" is not allowed'),
        ("SELECT pg_catalog.pg_read_file('/etc/passwd')", 'function "pg_read_file" is not allowed'),
        ('SELECT "PG_CATALOG"."Lo_Get"(1)', 'function "lo_get" is not allowed'),
        ("SELECT ('x'::text).pg_read_file", 'function "pg_read_file" is not allowed'),
        ("SELECT * FROM pg_catalog.pg_statistic", 'relation "pg_statistic" is not allowed'),
        ("SELECT * FROM pg_stats", 'relation "pg_stats" is not allowed'),
        (
            "SELECT * FROM information_schema._pg_user_mappings",
            'relation "information_schema._pg_user_mappings" is not allowed',
        ),
        ("SELECT current_setting('app.secret')", 'function "current_setting" is not allowed'),
        ("SELECT no_such_function(1)", 'function "no_such_function" is not allowed'),
        # user-defined objects of the fixture: the functions behind them are volatile
        ("SELECT 1 ### 2", 'operator "###" is not allowed (the function behind it may not run)'),
        (
            "SELECT 1::fixture_mood",
            'type "fixture_mood" is not allowed (a cast or I/O function behind it may not run)',
        ),
        ("SELECT fixture_volatile(1, 2)", 'function "fixture_volatile" is not allowed'),
        # PostgreSQL truncates identifiers to 63 bytes: the longer name is the same function
        (
            "SELECT (1).fixture_function_whose_name_is_exactly_sixty_three_bytes_long_x_and_more",
            'function "fixture_function_whose_name_is_exactly_sixty_three_bytes_long_x" is not allowed',
        ),
        ("SELECT public.current_setting('TimeZone')", 'function "current_setting" is not allowed'),
        ("SELECT pg_read_file /* gap */ ('x')", 'function "pg_read_file" is not allowed'),
        ("SELECT U&\"pg_read_fil\\0065\"('x')", 'function "pg_read_file" is not allowed'),
        (
            "SELECT 1; SELECT 2",
            "exactly one SQL statement is allowed (found more than one, separated by ';')",
        ),
    ],
)
def test_reasons(sql, expected):
    assert reason(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        # PostgreSQL nests block comments; sqlglot alone does not: the lexer must follow PostgreSQL.
        "SELECT 1 /* /* */, ' */ ; DELETE FROM users; --'",
        "SELECT 1 /* /* */, ' */ , pg_read_file('x') --'",
        # standard_conforming_strings: '\' is a complete literal
        "SELECT '\\'; DROP TABLE users; --'",
        # E'' strings: \' does not end the literal
        "SELECT E'\\'', pg_read_file('x') --'",
        "SELECT E'\\\\', pg_read_file('x') --'",
        # dollar quotes with tags
        "SELECT $a$ $$ $a$, pg_sleep(1)",
        "SELECT $a%s$, '$a$; DELETE FROM users; --'",
        # unterminated constructs
        "SELECT 'abc",
        'SELECT "abc',
        "SELECT $$abc",
        "SELECT 1 /* open",
        "SELECT 1 /* /* */",
        # characters PostgreSQL does not use outside literals
        "SELECT `a`",
        "SELECT 1 \\g",
        "SELECT {fn now()}",
        # NUL and invalid escapes
        "SELECT E'\\x00'",
        "SELECT 'a\x00b'",
        "SELECT U&'\\D800'",
        # EXPLAIN forms
        "EXPLAIN ANALYZE SELECT 1",
        "EXPLAIN ANALYSE SELECT 1",
        "EXPLAIN VERBOSE ANALYZE SELECT 1",
        "EXPLAIN (ANALYZE) SELECT 1",
        "EXPLAIN (ANALYZE true) SELECT 1",
        "EXPLAIN (COSTS OFF, ANALYZE) SELECT 1",
        "EXPLAIN (COSTS OFF, analyse 1) SELECT 1",
        "EXPLAIN (FORMAT SQL) SELECT 1",
        "EXPLAIN DELETE FROM users",
        "EXPLAIN SELECT pg_sleep(1)",
        "EXPLAIN EXPLAIN SELECT 1",
        "EXPLAIN",
        "EXPLAIN (VERBOSE",
        "EXPLAIN CREATE TABLE x AS SELECT 1",
        "EXPLAIN EXECUTE p",
        # locking, INTO, CTE writers anywhere
        "SELECT * FROM users FOR UPDATE",
        "SELECT * FROM users FOR SHARE",
        "SELECT * FROM users FOR KEY SHARE",
        "SELECT * FROM (SELECT * FROM users FOR UPDATE) s",
        "SELECT 1 UNION SELECT id FROM users FOR UPDATE",
        "WITH u AS (UPDATE users SET name = 'x' RETURNING *) SELECT * FROM u",
        "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
        "WITH a AS (SELECT 1), d AS (DELETE FROM t RETURNING *) SELECT * FROM a",
        "SELECT * INTO TEMP stolen FROM users",
        "SELECT 1 INTO x",
        # table functions and refused functions in every position
        "SELECT * FROM ROWS FROM (pg_ls_dir('.'))",
        "SELECT * FROM users, LATERAL pg_read_file('/etc/passwd') f",
        "SELECT (SELECT lo_get(424242))",
        "SELECT 1 FROM users WHERE pg_sleep(1) IS NOT NULL",
        "SELECT 1 FROM users ORDER BY pg_sleep(1)",
        "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM users",
        "SELECT nextval('users_id_seq')",
        "SELECT set_config('transaction_read_only', 'off', true)",
        "SELECT pg_notify('ch', 'x')",
        "SELECT query_to_xml('DELETE FROM users', true, true, '')",
        "SELECT table_to_xml('users', true, true, '')",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT 1')",
        "SELECT pg_try_advisory_lock(1)",
        "SELECT lo_export(424242, '/tmp/x')",
        "SELECT pg_file_write('x', 'y', false)",
        "SELECT pg_stat_file('postgresql.conf')",
        "SELECT dblink_exec('dbname=postgres', 'DROP TABLE users')",
        "SELECT pg_create_restore_point('x')",
        "SELECT pg_backup_start('x')",
        "SELECT pg_stat_reset()",
        # function calls in every syntactic position
        "SELECT pg_read_file(filename => '/etc/passwd')",
        "SELECT pg_read_file(VARIADIC ARRAY['x'])",
        "SELECT (pg_read_file('x')).foo",
        "SELECT * FROM pg_catalog.pg_read_file('x') WITH ORDINALITY",
        "SELECT CAST(pg_read_file('x') AS text)",
        "SELECT * FROM users LIMIT pg_sleep(1)",
        "SELECT * FROM users FETCH FIRST (pg_sleep(1)) ROWS ONLY",
        "SELECT ARRAY(SELECT pg_sleep(1))",
        "SELECT CASE pg_sleep(1) WHEN NULL THEN 1 END",
        "SELECT * FROM users u CROSS JOIN LATERAL (VALUES (pg_sleep(1))) v",
        "SELECT DISTINCT ON (pg_sleep(1)) 1 FROM users",
        "SELECT COALESCE(NULL, pg_read_file('x'))",
        "SELECT SUBSTRING(pg_read_file('x') FROM 1 FOR 5)",
        "SELECT TRIM(BOTH FROM pg_read_file('x'))",
        "VALUES (pg_read_file('x'))",
        "SELECT * FROM unnest(ARRAY[pg_read_file('x')])",
        "SELECT sum(id) OVER (PARTITION BY pg_sleep(1)) FROM users",
        "SELECT * FROM users GROUP BY ROLLUP (pg_sleep(1))",
        "SELECT * FROM users u LEFT JOIN LATERAL pg_ls_dir('.') d ON true",
        "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT pg_sleep(1)::int FROM x) SELECT * FROM x",
        "SELECT format('%s', pg_read_file('x'))",
        # statements
        "SELECT 1; DELETE FROM users",
        "DELETE FROM users; SELECT 1",
        "START TRANSACTION READ WRITE",
        "DISCARD ALL",
        "RESET ALL",
        "DECLARE c CURSOR FOR SELECT 1",
        "FETCH ALL FROM c",
        "COPY (SELECT 1) TO '/tmp/x'",
        "CREATE TABLE x AS SELECT 1",
        "GRANT ALL ON users TO public",
        "ALTER SYSTEM SET fsync = off",
        "LOAD 'plpgsql'",
        "REFRESH MATERIALIZED VIEW order_totals",
        "MERGE INTO t USING users u ON t.a = u.id WHEN MATCHED THEN DELETE",
        "UPDATE users SET name = 'x'",
        "",
        "   ",
        ";",
        "-- only a comment",
    ],
)
def test_refused(sql):
    assert reason(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a'\n'b'",
        "SELECT E'it''s', E'a\\nb', E'\\u00e9', U&'d\\0061t\\+000061', U&'d!0061t' UESCAPE '!'",
        "SELECT $tag$ ; DELETE FROM users; $tag$",
        "(SELECT 1)",
        "VALUES (1), (2)",
        "TABLE users",
        "SELECT 1;",
        "SELECT 1;;  ; -- trailing",
        "EXPLAIN (FORMAT JSON) SELECT 1",
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM users",
        "EXPLAIN (COSTS false, SUMMARY on, SETTINGS) SELECT 1",
        "EXPLAIN VERBOSE SELECT 1",
        "SELECT currval('users_id_seq'), lastval()",
        "SELECT pg_get_viewdef('user_names'::regclass)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r LIMIT 5",
        "SELECT a$$ FROM t",
        "SELECT '{1,2}'::int[] @> ARRAY[1], 'x' ~ '^x', data->>'a' FROM (SELECT '{}'::jsonb AS data) s",
        "SELECT 1 FROM users WHERE name LIKE 'a%'",
        "SELECT 10 % 3",
        "SELECT count(*) FROM generate_series(1, 10)",
        'SELECT lower(name), "left"(name, 1), lpad(name, 3) FROM users',
        *GOOD_SQL_SQLGLOT_CANNOT_READ,
    ],
)
def test_accepted(sql):
    check_sql(sql)


def test_normalised_text_is_what_runs():
    c = prepare_sql("/* c */ SELECT $$a'b$$, E'x\\ny' -- tail\n FROM t")
    assert c.text == "SELECT 'a''b', 'x\ny'  \n FROM t"
    assert not c.explain
    e = prepare_sql("EXPLAIN (COSTS OFF) /* x */ SELECT 1")
    assert e.explain and e.text.startswith("EXPLAIN (COSTS OFF)") and e.text.endswith("SELECT 1")


def test_placeholders():
    c = prepare_sql(
        "SELECT * FROM users WHERE name = %s AND note LIKE '%x%' AND id % 2 = 0", with_params=False
    )
    assert c.placeholders == 0
    with pytest.raises(GuardDenied):
        prepare_sql("SELECT 10 % 3", with_params=True)
    c = prepare_sql("SELECT %s, 10 %% 3, '%s', \"%s\" -- %s\n", with_params=True)
    assert c.placeholders == 1
    assert c.text.startswith("SELECT $1, 10 % 3, '%s', \"%s\"")
    c = prepare_sql("SELECT %s, %s", with_params=True)
    assert c.text == "SELECT $1, $2" and c.placeholders == 2


_DENY_SAMPLES = [
    "nextval",
    "setval",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_notify",
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "txid_current",
    "pg_current_xact_id",
    "pg_stat_get_activity",
    "pg_show_all_settings",
    "pg_stat_file",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "setseed",
    "current_setting",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_from_bytea",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_open",
    "lo_truncate",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "schema_to_xml",
    "database_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "pg_file_write",
    "pg_file_unlink",
    "pg_create_restore_point",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_replication_origin_create",
    "pg_logical_emit_message",
    "pg_stat_reset_shared",
]


@pytest.mark.parametrize("name", _DENY_SAMPLES)
def test_refused_function_every_form(name):
    for sql in (
        f"SELECT {name}(1)",
        f"SELECT {name.upper()}(1, 2)",
        f"SELECT pg_catalog.{name}('a')",
        f'SELECT "{name}"()',
        f"SELECT * FROM {name}('x') AS f",  # noqa: S608
        f"SELECT 1 WHERE EXISTS (SELECT {name}(1))",
    ):
        assert "is not allowed" in reason(sql), sql


def test_fast():
    big = "SELECT " + ", ".join(f"col{i} + {i}" for i in range(2000)) + " FROM t"  # noqa: S608
    t = time.perf_counter()
    for sql in ACCEPTED + REJECTED:
        try:
            check_sql(sql)
        except GuardDenied:
            pass
    check_sql(big)
    assert time.perf_counter() - t < 5


def test_huge_input_is_refused_cleanly():
    deep = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    try:
        check_sql(deep)
    except GuardDenied:
        pass


# --- properties ---------------------------------------------------------------------------

_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$[A-Za-z_]*\$.*?\$[A-Za-z_]*\$)", re.S)
_WS_CHOICES = [" ", "  ", "\n", "\t", " /* x */ ", "\n-- x\n", " /* a /* nested */ b */ ", "\r\n"]


@st.composite
def disguised(draw, sql: str):
    parts = _QUOTED.split(sql)
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 1:  # a literal / quoted identifier: data, keep exactly
            out.append(part)
            continue
        chars = []
        for ch in part:
            if ch.isalpha() and draw(st.booleans()):
                ch = ch.swapcase()
            if ch == " ":
                ch = draw(st.sampled_from(_WS_CHOICES))
            chars.append(ch)
        out.append("".join(chars))
    body = "".join(out)
    prefix = draw(st.sampled_from(["", "/* x */ ", "-- x\n", "\n\t", "/* ; DROP */"]))
    suffix = draw(st.sampled_from(["", " /* x */", " -- x", ";", " ;  ", "\n"]))
    return prefix + body + suffix


def _wrappings(sql: str) -> list[str]:
    out = [sql]
    if ";" not in sql and re.match(r"\s*(SELECT|WITH|VALUES|TABLE)\b", sql, re.I):
        out += [f"SELECT * FROM ({sql}) AS w", f"({sql})", f"SELECT 1 WHERE EXISTS ({sql})", f"EXPLAIN {sql}"]  # noqa: S608
    elif ";" not in sql and not sql.upper().startswith("EXPLAIN"):
        out += [f"EXPLAIN {sql}", f"WITH w AS ({sql}) SELECT 1"]
    return out


_REJECT_CASES = [w for s in REJECTED for w in _wrappings(s)]


@given(data=st.data(), idx=st.integers(min_value=0, max_value=len(_REJECT_CASES) - 1))
def test_disguised_rejects_stay_rejected(data, idx):
    sql = data.draw(disguised(_REJECT_CASES[idx]))
    with pytest.raises(GuardDenied):
        check_sql(sql)


@given(data=st.data(), idx=st.integers(min_value=0, max_value=len(ACCEPTED) - 1))
def test_disguised_accepts_stay_accepted(data, idx):
    sql = data.draw(disguised(ACCEPTED[idx]))
    check_sql(sql)


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text):
    try:
        c = prepare_sql(text)
    except GuardDenied:
        return
    # whatever passes is a single statement whose normalised text passes again
    prepare_sql(c.text)


@given(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80)
)
def test_string_literals_round_trip(value):
    quoted = "'" + value.replace("'", "''") + "'"
    c = prepare_sql(f"SELECT {quoted} AS v")
    assert c.text == f"SELECT {quoted} AS v"
    dollar = f"$q${value}$q$"
    if "$q$" not in value:
        assert prepare_sql(f"SELECT {dollar}").text == f"SELECT {quoted}"


# --- wrapping a refused function call in every way PostgreSQL still resolves it -----------

_REFUSED_ONE_ARG = [
    "pg_read_file",
    "pg_read_binary_file",
    "pg_sleep",
    "nextval",
    "lo_unlink",
    "lo_get",
    "pg_try_advisory_lock",
    "pg_terminate_backend",
    "ts_stat",
    "pg_stat_file",
    "pg_ls_dir",
    "brin_summarize_new_values",
    "gin_clean_pending_list",
    "pg_create_physical_replication_slot",
    "pg_replication_origin_create",
    "query_to_xml",
    "current_setting",
    "setseed",
]


def _u_ident(name: str, draw) -> str:
    """U&"..." with some characters written as \\XXXX escapes."""
    body = "".join(f"\\{ord(c):04x}" if draw(st.booleans()) else c for c in name)
    return f'U&"{body}"'


@st.composite
def _spelled(draw, name: str) -> str:
    how = draw(st.integers(0, 3))
    if how == 0:
        word = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    elif how == 1:
        word = f'"{name}"'
    elif how == 2:
        word = _u_ident(name, draw)
    else:
        word = name
    if draw(st.booleans()):
        schema = draw(st.sampled_from(["pg_catalog", '"pg_catalog"', "PG_CATALOG", 'U&"pg_c\\0061talog"']))
        word = f"{schema}.{word}"
    return word


_ARGS = ["'/etc/passwd'", "'/etc/passwd'::text", "CAST('x' AS text)", "1", "1::int8", "(SELECT 'x')", "id"]


@st.composite
def _refused_call(draw) -> str:
    name = draw(st.sampled_from(_REFUSED_ONE_ARG))
    word = draw(_spelled(name))
    arg = draw(st.sampled_from(_ARGS))
    gap = draw(st.sampled_from(["", " ", " /* c */ ", "\n"]))
    form = draw(st.integers(0, 4))
    if form == 0:
        expr = f"{word}{gap}({arg})"
    elif form == 1:  # attribute notation: PostgreSQL reads (x).f as f(x)
        expr = f"({arg}){gap}.{gap}{word}"
    elif form == 2:
        expr = f"(({arg}))." + word
    elif form == 3:
        expr = f"(CAST({arg} AS text)).{word}"
    else:
        expr = f"({word}({arg}))::text"
    for _ in range(draw(st.integers(0, 3))):
        expr = draw(
            st.sampled_from(
                [
                    f"coalesce({expr}, NULL)",
                    f"ARRAY[{expr}]",
                    f"({expr})::text",
                    f"CAST({expr} AS text)",
                    f"(SELECT {expr})",
                    f"CASE WHEN true THEN {expr} END",
                    f"({expr}) IS NULL",
                ]
            )
        )
    return draw(
        st.sampled_from(
            [
                f"SELECT {expr}",
                f"SELECT * FROM (SELECT {expr} AS v) s",
                f"WITH c AS (SELECT {expr} AS v) SELECT * FROM c",
                f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE {expr} IS NULL) SELECT * FROM r",
                f"SELECT 1 FROM users WHERE {expr} IS NOT NULL",
                f"SELECT id FROM users ORDER BY {expr}",
                f"SELECT count(*) FILTER (WHERE {expr} IS NULL) FROM users",
                f"SELECT * FROM users u, LATERAL (SELECT {expr} AS v) l",
                f"SELECT sum(id) OVER (PARTITION BY {expr}) FROM users",
                f"VALUES ({expr})",
                f"EXPLAIN SELECT {expr}",
                f"SELECT 1 UNION ALL SELECT {expr}",
                f"SELECT (ARRAY[1, 2])[({expr}) IS NULL::int + 1]",
            ]
        )
    )


@given(_refused_call())
def test_wrapped_refused_calls_stay_refused(sql):
    with pytest.raises(GuardDenied):
        check_sql(sql)


@pytest.mark.parametrize("name", _REFUSED_ONE_ARG)
def test_every_sample_is_refused_by_the_catalog(name):
    """The property above is only meaningful if each name is refused by the catalog itself."""
    assert CATALOG is not None and name in CATALOG.functions


def test_readable_settings_only_by_literal():
    check_sql("SELECT current_setting('TimeZone'), pg_catalog.current_setting('server_version_num', true)")
    for sql in (
        "SELECT current_setting('app.secret')",
        "SELECT current_setting('Time' || 'Zone')",
        "SELECT current_setting(name) FROM (SELECT 'app.secret' AS name) s",
        "SELECT ('app.secret'::text).current_setting",
        "SELECT current_setting($$app.secret$$)",
        "SELECT current_setting('TimeZone', current_setting('app.secret') IS NULL)",
    ):
        assert "is not allowed" in reason(sql), sql


# --- the supervisor's precheck ------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM users",
        "  /* a /* nested */ b */ -- c\n ((  delete FROM users",
        "COPY users TO STDOUT",
        "set statement_timeout = 0",
        "SELECT " + "1," * 50_000 + "1",  # longer than the cap
    ],
)
def test_precheck_refuses(sql):
    with pytest.raises(GuardDenied):
        precheck_sql(sql)


@pytest.mark.parametrize("sql", [*ACCEPTED, "EXPLAIN SELECT 1", "SELECT pg_read_file('x')", "/* unterminated"])
def test_precheck_passes_queries_on(sql):
    """Everything that starts like a query goes on to the worker's full check."""
    precheck_sql(sql)


@given(st.text(max_size=300))
def test_precheck_never_crashes_and_agrees_with_the_guard(text):
    """The precheck refuses only what the full guard refuses too."""
    try:
        precheck_sql(text)
    except GuardDenied:
        with pytest.raises(GuardDenied):
            check_sql(text)
