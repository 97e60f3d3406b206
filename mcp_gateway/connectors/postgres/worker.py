"""The postgres connector: db.query and db.schema on one persistent psycopg 3 connection.

The SQL guard runs here, under the call's deadline (the supervisor only prechecks), against
the allowlists read from the server's catalog when the connection opens; the query then runs
inside ``BEGIN READ ONLY`` with ``SET LOCAL statement_timeout / lock_timeout /
idle_in_transaction_session_timeout`` a little under the call's timeout, through a
server-side cursor (``DECLARE ... CURSOR``, which itself only accepts a query) fetched in
batches that stop at the row and byte caps, and always ends with ``ROLLBACK``.

What runs is the guard's *normalised* text (comments removed, literals canonical, ``%s`` ->
``$n``), bound with ``psycopg.RawServerCursor`` so psycopg does no %-processing of its own.
See docs/POSTGRES.md for the value mapping and the placeholder rules.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import re
import socket
import time
from decimal import Decimal
from typing import Any

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Args, Instance
from mcp_gateway.connectors.postgres.settings import PostgresSettings
from mcp_gateway.connectors.postgres.sql import CheckedSql, prepare_sql
from mcp_gateway.connectors.postgres.sql_catalog import SqlCatalog, load_catalog
from mcp_gateway.connectors.postgres.tools import QUERY, SCHEMA, QueryArgs, SchemaArgs
from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.sandbox.profile import INET_FAMILIES, SandboxProfile
from mcp_gateway.workers.connector import CallLimits, Connector

APPLICATION_NAME = "mcp-gateway"
_CURSOR_NAME = "mcp_gateway_q"
_BATCH_ROWS = 1024
_FIRST_BATCH_ROWS = 32
_SCHEMA_KINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
}

_SCHEMA_SQL = """
SELECT n.nspname, c.relname, c.relkind, a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND ($1::text IS NOT NULL AND n.nspname = $1::text
       OR $1::text IS NULL AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%')
  AND ($2::text IS NULL OR c.relname = $2::text)
ORDER BY n.nspname, c.relname, a.attnum
"""

# Types whose text form is handed on as is (ISO DateStyle / iso_8601 IntervalStyle are set
# per transaction), instead of psycopg's Python objects: exact, and never out of range
# (infinity, BC dates, years past 9999).
_TEXT_TYPES = (
    "interval",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "datemultirange",
    "tsmultirange",
    "tstzmultirange",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "money",
)
_ISO_TYPES = ("date", "time", "timetz", "timestamp", "timestamptz")


def _import_psycopg() -> Any:
    import psycopg

    return psycopg


# A worker whose connection attempts keep failing asks to be replaced (the runtime's wear check):
# its local state (descriptors, TLS) may be what is broken.
BROKEN_AFTER_FAILED_CONNECTS = 3


class PostgresConnector(Connector):
    kind = "postgres"

    def __init__(self, config: GatewayConfig, instance: Instance | None = None) -> None:
        super().__init__(config, instance)
        self.settings: PostgresSettings
        self._conn: Any = None
        self._type_names: dict[int, str] = {}
        self._catalog: SqlCatalog | None = None
        self._deadline = 0.0
        self._failed_connects = 0  # in a row; past BROKEN_AFTER_FAILED_CONNECTS the worker is replaced

    # --- lifecycle --------------------------------------------------------------------------

    def warm(self) -> None:
        """Everything a call will need, imported and run once here, before any sandbox layer:
        after Landlock a worker can open no new module, shared library or NSS file."""
        _warm_libraries()
        psycopg = _import_psycopg()
        # Run the pure parts of connection set-up once so that their lazy imports happen now.
        psycopg.conninfo.conninfo_to_dict(
            psycopg.conninfo.make_conninfo("", **self._conninfo_kwargs(password=None))
        )
        _warm_host_lookups(self.settings.port)
        _warm_sql_guard()

    def sandbox_profile(self) -> SandboxProfile:
        s = self.settings
        paths: list[str] = [
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/nsswitch.conf",
            "/etc/gai.conf",
            "/etc/host.conf",
            "/etc/passwd",
            "/etc/ssl",
            "/usr/lib/ssl",
            "/usr/share/ca-certificates",
            "/etc/postgresql-common/pg_service.conf",
        ]
        home = os.path.expanduser("~")
        if home and home != "~":
            paths += [
                os.path.join(home, ".postgresql"),
                os.path.join(home, ".pgpass"),
                os.path.join(home, ".pg_service.conf"),
            ]
        for var in (
            "PGPASSFILE",
            "PGSSLROOTCERT",
            "PGSSLCERT",
            "PGSSLKEY",
            "PGSSLCRL",
            "PGSERVICEFILE",
            "PGSYSCONFDIR",
        ):
            v = os.environ.get(var)
            if v and os.path.isabs(v):
                paths.append(v)
        families: tuple[int, ...] = INET_FAMILIES
        if s.host.startswith("/"):
            paths.append(s.host)
            families = (*INET_FAMILIES, socket.AF_UNIX)
        seen: list[str] = []
        for p in paths:
            if p not in seen and os.path.exists(p):
                seen.append(p)
        lim = self.limits()
        return SandboxProfile(
            instance=self.name,
            read_paths=tuple(seen),
            connect_ports=(s.port,),
            socket_families=families,
            memory_mb=lim.memory_mb,
            cpu_s=lim.cpu_s,
            nofile=lim.nofile,
        )

    def start(self) -> None:
        """Nothing to do: the connection is opened on the first call (so a database that is
        down at start-up does not stop the worker from serving a clear UPSTREAM_ERROR)."""

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # --- connection ---------------------------------------------------------------------------

    def _conninfo_kwargs(self, password: str | None) -> dict[str, Any]:
        s = self.settings
        kw: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "dbname": s.database,
            "user": s.user,
            "sslmode": s.sslmode,
            "connect_timeout": s.connect_timeout_s,
            "application_name": APPLICATION_NAME,
            "client_encoding": "UTF8",
            # No Kerberos probing: it would read krb5 files and credential caches.
            "gssencmode": "disable",
        }
        if password:
            kw["password"] = password
        return kw

    def _connect(self) -> Any:
        psycopg = _import_psycopg()
        from psycopg.adapt import Loader

        try:
            conn = psycopg.connect(
                autocommit=True, **self._conninfo_kwargs(os.environ.get(self.settings.password_env))
            )
        except psycopg.Error as e:
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"could not connect to PostgreSQL: {_pg_message(e)}") from None

        class _Text(Loader):
            def load(self, data: Any) -> str:
                return bytes(data).decode("utf-8")

        class _Iso(Loader):
            def load(self, data: Any) -> str:
                return _iso(bytes(data).decode("utf-8"))

        for t in _TEXT_TYPES:
            conn.adapters.register_loader(t, _Text)
        for t in _ISO_TYPES:
            conn.adapters.register_loader(t, _Iso)
        self._type_names = {}
        try:
            with conn.cursor() as cur:
                self._catalog = load_catalog(
                    cur,
                    allow_functions=self.settings.allow_functions,
                    allow_relations=self.settings.allow_relations,
                )
        except psycopg.Error as e:
            conn.close()
            raise Refusal(
                ErrorCode.UPSTREAM_ERROR, f"could not read the function catalog: {_pg_message(e)}"
            ) from None
        return conn

    def _connection(self) -> Any:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self.close()
            conn = None
        if conn is None:
            self._failed_connects += 1
            conn = self._conn = self._connect()
            self._failed_connects = 0
        return conn

    def broken(self) -> str | None:
        if self._failed_connects >= BROKEN_AFTER_FAILED_CONNECTS:
            return f"{self._failed_connects} connection attempts in a row failed"
        return None

    # --- calls --------------------------------------------------------------------------------

    def call(self, tool: str, args: Args, limits: CallLimits) -> dict:
        if tool == QUERY.tool:
            if not isinstance(args, QueryArgs):
                raise Refusal(ErrorCode.VALIDATION_ERROR, "db.query takes QueryArgs")
            self._connection()  # the guard decides names by this server's catalog, read at connect
            catalog = self._catalog
            if catalog is None:  # pragma: no cover - _connect sets it or raises
                raise Refusal(ErrorCode.UPSTREAM_ERROR, "the function catalog was not read")
            checked = prepare_sql(args.sql, catalog, with_params=bool(args.params))
            if checked.placeholders and checked.placeholders != len(args.params):
                raise Refusal(
                    ErrorCode.VALIDATION_ERROR,
                    f"the query has {checked.placeholders} %s placeholder(s)"
                    f" but {len(args.params)} param(s) were given",
                )
            max_rows = args.max_rows or self.settings.default_max_rows
            return self._in_transaction(
                limits, lambda conn: self._query(conn, checked, list(args.params), max_rows, limits)
            )
        if tool == SCHEMA.tool:
            if not isinstance(args, SchemaArgs):
                raise Refusal(ErrorCode.VALIDATION_ERROR, "db.schema takes SchemaArgs")
            return self._in_transaction(limits, lambda conn: self._schema(conn, args, limits))
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"unknown tool {tool!r} for the postgres connector")

    def _in_transaction(self, limits: CallLimits, body: Any) -> dict:
        psycopg = _import_psycopg()
        conn = self._connection()
        t = max(1, int(limits.timeout_ms))
        # The runtime's deadline already leaves time to cancel and roll back.
        stmt_ms = max(1, int(limits.remaining_s() * 1000))
        # A backend whose worker was killed (call timeout, cancellation) notices the closed
        # socket within this interval and aborts the statement (PostgreSQL >= 14).
        check_interval = (
            "; SET LOCAL client_connection_check_interval = 250"
            if conn.info.server_version >= 140000
            else ""
        )
        # statement_timeout applies to each FETCH on its own: the whole call is bounded here.
        self._deadline = time.monotonic() + stmt_ms / 1000
        began = False
        try:
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "BEGIN TRANSACTION READ ONLY;"
                        f" SET LOCAL statement_timeout = {stmt_ms};"
                        f" SET LOCAL lock_timeout = {stmt_ms};"
                        f" SET LOCAL idle_in_transaction_session_timeout = {t};"
                        " SET LOCAL standard_conforming_strings = on;"
                        " SET LOCAL DateStyle = 'ISO, YMD';"
                        " SET LOCAL IntervalStyle = 'iso_8601';"
                        " SET LOCAL TimeZone = 'UTC';"
                        " SET LOCAL extra_float_digits = 3"
                        + check_interval
                    )
                began = True
                return body(conn)
            except Refusal:
                raise
            except psycopg.Error as e:
                raise self._map_error(e, stmt_ms) from None
        finally:
            if began or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - a broken connection is replaced on the next call
                    self.close()
            if self._conn is not None and (conn.closed or conn.broken):
                self.close()

    def _check_deadline(self) -> None:
        if time.monotonic() > self._deadline:
            raise Refusal(ErrorCode.TIMEOUT, "the call ran past its timeout while fetching rows")

    def _map_error(self, e: Any, stmt_ms: int) -> Refusal:
        psycopg = _import_psycopg()
        state = getattr(e, "sqlstate", None) or ""
        if state == "57014":  # query_canceled (statement_timeout)
            return Refusal(ErrorCode.TIMEOUT, f"the query was cancelled by statement_timeout ({stmt_ms} ms)")
        if state == "55P03":  # lock_not_available (lock_timeout)
            return Refusal(ErrorCode.TIMEOUT, f"the query waited too long for a lock (lock_timeout {stmt_ms} ms)")
        if state == "25006":  # read_only_sql_transaction: a write the guard did not catch
            return Refusal(
                ErrorCode.SECURITY_ERROR,
                f"the database refused a write in the read-only transaction: {_pg_message(e)}",
            )
        if state in ("42P01", "3F000"):  # undefined_table, invalid_schema_name
            return Refusal(ErrorCode.NOT_FOUND, _pg_message(e))
        if (
            isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))
            or self._conn is None
            or self._conn.broken
        ):
            self.close()
        return Refusal(ErrorCode.UPSTREAM_ERROR, _pg_message(e))

    # --- db.query -------------------------------------------------------------------------

    def _query(
        self, conn: Any, checked: CheckedSql, params: list[Any], max_rows: int, limits: CallLimits
    ) -> dict:
        psycopg = _import_psycopg()
        import msgspec

        budget = limits.max_bytes
        if checked.explain:
            cur = psycopg.RawCursor(conn)
        else:
            cur = psycopg.RawServerCursor(conn, _CURSOR_NAME, scrollable=False, withhold=False)
        try:
            cur.execute(checked.text, params or None)
            desc = cur.description or []
            columns = [{"name": c.name, "type": self._type_name(conn, c.type_code)} for c in desc]
            used = header = len(msgspec.json.encode(columns)) + 64
            if used > budget:
                raise Refusal(ErrorCode.RESULT_TOO_LARGE, f"the result would pass max_bytes ({budget})")
            rows: list[list[Any]] = []
            truncated = False
            batch_rows = _FIRST_BATCH_ROWS
            while True:
                want = min(batch_rows, max_rows + 1 - len(rows))
                self._check_deadline()
                batch = cur.fetchmany(want)
                if not batch:
                    break
                for raw in batch:
                    if len(rows) >= max_rows:
                        truncated = True
                        break
                    row = [_json_value(v) for v in raw]
                    used += len(msgspec.json.encode(row)) + 1
                    if used > budget:
                        raise Refusal(
                            ErrorCode.RESULT_TOO_LARGE,
                            f"the result would pass max_bytes ({budget}) after {len(rows)} row(s); "
                            "select fewer rows or columns, or lower max_rows",
                        )
                    rows.append(row)
                if truncated or len(batch) < want:
                    break
                # Size the next FETCH from the rows seen so far, so that the worker never holds
                # much more than the remaining byte budget.
                avg = max(1, (used - header) // max(1, len(rows)))
                batch_rows = max(1, min(_BATCH_ROWS, (budget - used) // avg + 1))
            return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}
        finally:
            with contextlib.suppress(Exception):  # the ROLLBACK that follows closes it anyway
                cur.close()

    def _type_name(self, conn: Any, oid: int) -> str:
        name = self._type_names.get(oid)
        if name is None:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_catalog.format_type(%s::oid, NULL)", (oid,))
                row = cur.fetchone()
            name = (row[0] if row and row[0] else None) or str(oid)
            if len(self._type_names) < 10_000:
                self._type_names[oid] = name
        return name

    # --- db.schema ------------------------------------------------------------------------

    def _schema(self, conn: Any, args: SchemaArgs, limits: CallLimits) -> dict:
        psycopg = _import_psycopg()
        import msgspec

        budget = limits.max_bytes
        used = 16
        tables: list[dict[str, Any]] = []
        cur = psycopg.RawServerCursor(conn, _CURSOR_NAME + "_schema")
        try:
            cur.execute(_SCHEMA_SQL, [args.schema, args.table])
            current: dict[str, Any] | None = None
            while True:
                self._check_deadline()
                batch = cur.fetchmany(_BATCH_ROWS)
                if not batch:
                    break
                for nsp, rel, kind, att, typ, nullable in batch:
                    if current is None or current["schema"] != nsp or current["name"] != rel:
                        current = {
                            "schema": nsp,
                            "name": rel,
                            "kind": _SCHEMA_KINDS.get(kind, kind),
                            "columns": [],
                        }
                        tables.append(current)
                        used += len(msgspec.json.encode(current)) + 1
                    if att is not None:
                        col = {"name": att, "type": typ, "nullable": bool(nullable)}
                        current["columns"].append(col)
                        used += len(msgspec.json.encode(col)) + 1
                    if used > budget:
                        raise Refusal(
                            ErrorCode.RESULT_TOO_LARGE,
                            f"the schema description would pass max_bytes ({budget});"
                            " filter by schema or table",
                        )
        finally:
            with contextlib.suppress(Exception):
                cur.close()
        if not tables and (args.schema or args.table):
            what = ".".join(x for x in (args.schema, args.table) if x)
            raise Refusal(ErrorCode.NOT_FOUND, f"no table or view matches {what!r}")
        return {"tables": tables}


# sqlglot's per-dialect packages: only their postgres and shared modules are needed (the other
# dialects are most of sqlglot's code, and compiling them would slow every worker start).
_SQLGLOT_DIALECT_PACKAGES = ("sqlglot.dialects.", "sqlglot.parsers.", "sqlglot.generators.", "sqlglot.typing.")
_SQLGLOT_SHARED = ("postgres", "dialect", "base")
_SQLGLOT_UNUSED = ("sqlglot.__main__", "sqlglot.executor", "sqlglot.planner", "sqlglot.lineage", "sqlglot.serde")


def _warm_libraries() -> None:
    """psycopg with every type adapter, its libpq, the codecs and zones results are read with."""
    import codecs
    import encodings.ascii  # noqa: F401
    import encodings.idna  # noqa: F401
    import encodings.latin_1  # noqa: F401
    import encodings.utf_8  # noqa: F401
    import ipaddress  # noqa: F401
    import json  # noqa: F401
    import ssl  # noqa: F401
    import uuid  # noqa: F401
    import zoneinfo

    import msgspec
    import psycopg
    import psycopg.adapt  # noqa: F401
    import psycopg.conninfo
    import psycopg.errors  # noqa: F401
    import psycopg.pq
    import psycopg.rows  # noqa: F401
    import psycopg.types.array  # noqa: F401
    import psycopg.types.bool  # noqa: F401
    import psycopg.types.composite  # noqa: F401
    import psycopg.types.datetime  # noqa: F401
    import psycopg.types.enum  # noqa: F401
    import psycopg.types.hstore  # noqa: F401
    import psycopg.types.json  # noqa: F401
    import psycopg.types.multirange  # noqa: F401
    import psycopg.types.net  # noqa: F401
    import psycopg.types.none  # noqa: F401
    import psycopg.types.numeric  # noqa: F401
    import psycopg.types.range  # noqa: F401
    import psycopg.types.string  # noqa: F401
    import psycopg.types.uuid  # noqa: F401

    try:  # the C implementation and its bundled libpq (dlopened here, not in the sandbox)
        import psycopg_binary  # noqa: F401
        import psycopg_binary.pq  # noqa: F401
    except ImportError:  # pragma: no cover - pure-python / system libpq install
        pass
    psycopg.pq.version()
    psycopg.pq.__build_version__  # noqa: B018
    for enc in ("utf-8", "ascii", "latin-1", "idna"):
        codecs.lookup(enc)
    with contextlib.suppress(Exception):  # tzdata is optional
        zoneinfo.ZoneInfo("UTC")
    msgspec.json.encode([None, True, 1, 1.5, "x", [1, "a"], {"a": [1]}])
    base64.b64encode(b"x")
    Decimal("1.5").is_finite()


def _warm_host_lookups(port: int) -> None:
    """dlopen the NSS modules (hosts, passwd) while the filesystem is still open."""
    try:
        socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
    except OSError:
        pass
    try:
        import pwd

        pwd.getpwuid(os.getuid())
    except (KeyError, ImportError):
        pass


# Statements that take the SQL guard down each of its paths (accepted, refused, unparsable).
_GUARD_PROBES = (
    ("SELECT a, count(*) FROM t WHERE b = %s GROUP BY a", True),
    ("EXPLAIN (COSTS OFF) WITH x AS (SELECT 1) SELECT * FROM x UNION SELECT 2", False),
    ("SELECT (ARRAY[1])[1], a[1][2], regexp_replace(n, '\\s', '_', 'g'), @ -5 FROM t", False),
    ("SELECT collation for ('x'), x FROM t ORDER BY x USING >", False),
    ("SELECT * FROM pg_catalog.pg_class, information_schema.tables", False),
    ("SELECT * FROM", False),
    ("DELETE FROM t", False),
    ("SELECT pg_sleep(1)", False),
)


def _warm_sql_guard() -> None:
    """sqlglot imports modules lazily (its postgres dialect, and optimizer.annotate_types /
    simplify from inside the parser for subscripts and some functions): import them all now,
    then run the guard over probes of each path."""
    import importlib
    import pkgutil

    import sqlglot

    for mod in pkgutil.walk_packages(sqlglot.__path__, "sqlglot."):
        if _sqlglot_module_needed(mod.name):
            with contextlib.suppress(Exception):  # optional extras (e.g. the Rust tokenizer)
                importlib.import_module(mod.name)
    probe_catalog = SqlCatalog(
        functions=frozenset({"pg_sleep"}),
        callable=frozenset({"count"}),
        operators=frozenset(),
        types=frozenset(),
        relations=frozenset({"pg_authid"}),
        system_schemas=frozenset({"pg_catalog"}),
        allowed_relations=frozenset(),
    )
    for probe, with_params in _GUARD_PROBES:
        with contextlib.suppress(GuardDenied):
            prepare_sql(probe, probe_catalog, with_params=with_params)


def _sqlglot_module_needed(name: str) -> bool:
    """Every sqlglot module the guard may import lazily: all but other dialects and tools."""
    if name.startswith(_SQLGLOT_UNUSED):
        return False
    if name.startswith(_SQLGLOT_DIALECT_PACKAGES):
        return name.rsplit(".", 1)[-1] in _SQLGLOT_SHARED
    return True


def _pg_message(e: Any) -> str:
    """sqlstate + PostgreSQL's primary message (never the conninfo or a password)."""
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    msg = primary or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    if "password=" in msg:  # belt and braces: libpq never echoes it, but be sure
        msg = msg.split("password=", 1)[0] + "password=***"
    state = getattr(e, "sqlstate", None)
    return f"{state}: {msg}" if state else msg


_TZ_HOURS = re.compile(r"([+-][0-9]{2})$")


def _iso(s: str) -> str:
    """PostgreSQL's ISO DateStyle output -> ISO 8601: "2024-01-02 03:04:05.6+00" ->
    "2024-01-02T03:04:05.6+00:00". infinity / BC values are handed on unchanged."""
    if s.endswith(" BC") or not s[:1].isdigit():
        return s
    if len(s) > 13 and s[4] == "-" and s[10] == " " and s[11:13].isdigit():
        s = s[:10] + "T" + s[11:]
    if ":" in s:
        s = _TZ_HOURS.sub(r"\1:00", s)
    return s


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)
