"""The db.query guard: one read-only query (SELECT / set operation / VALUES / EXPLAIN of one),
run in the postgres worker against the connected server's catalog (connectors/postgres/sql_catalog.py).

Three stages, all pure:

1. A lexer that follows PostgreSQL's own scanner (``scan.l``, ``standard_conforming_strings =
   on``): nested ``/* */`` comments, ``--`` comments, ``'...'`` with ``''``, ``E'...'`` with
   backslash escapes, ``U&'...'`` / ``U&"..."`` with ``UESCAPE``, ``B''`` / ``X''`` bit strings,
   string continuation across a newline, ``$tag$`` dollar quotes, quoted identifiers,
   ``$n`` parameters. It splits statements on top-level ``;`` (exactly one non-empty
   statement is allowed) and produces a *normalised* text: comments removed, every string
   literal re-written as a plain ``'...'`` literal, every quoted / unusual identifier
   re-written as a plain ``"..."`` identifier, ``%s`` placeholders turned into ``$n`` (only
   when the call has params). Anything the lexer does not understand is refused. The
   normalised text is what the worker executes.

2. Names, on those tokens (not on sqlglot's tree, which reads some names differently from
   PostgreSQL: ``(x).f`` is the call ``f(x)`` to PostgreSQL): every identifier and operator
   that names a function, type or system relation the catalog refuses is refused, wherever
   it stands.

3. ``sqlglot.parse(..., read="postgres")`` (never ``parse_one``), for structure only: the
   root must be a query; no DML/DDL/command node anywhere (data-modifying CTEs, ``SELECT
   INTO``, locking clauses, sqlglot ``Command`` fallbacks); calls sqlglot does not know must
   name an allowed function; qualified system relations must be on the allowlist.
   ``EXPLAIN`` (which sqlglot 30 only knows as a ``Command``) is parsed here from the lexer's
   tokens: options are checked, ``ANALYZE`` is refused in any form, and the inner statement is
   checked like a top-level one.

The supervisor runs only connectors/postgres/sql_precheck.py (bounded, linear, no sqlglot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from mcp_gateway.connectors.postgres.sql_catalog import READABLE_SETTINGS, SqlCatalog
from mcp_gateway.connectors.postgres.sql_precheck import MAX_SQL_CHARS, REFUSED_LEADING
from mcp_gateway.guards import GuardDenied

__all__ = ["CheckedSql", "prepare_sql"]

# --- lexer --------------------------------------------------------------------------------

_WS = " \t\n\r\f"
_DIGITS = "0123456789"
_OP_CHARS = set("~!@#^&|?+-*/%<>=")  # PostgreSQL's op_chars, minus the backtick (refused)
_SELF = set(",()[].;:+-*/%^<>=")
_IDENT_START = re.compile(r"[A-Za-z_\u0080-\U0010ffff]")
_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_DOLQ = re.compile(r"\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$[0-9]+")
_NUMBER = re.compile(
    r"(?:[0-9][0-9A-Za-z_]*(?:\.[0-9A-Za-z_]*)?|\.[0-9][0-9A-Za-z_]*)(?:(?<=[eE])[+-][0-9][0-9_]*)?"
)
_WS_RUN = re.compile(r"[ \t\n\r\f]+")
_ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Kind = Literal["ws", "ident", "qident", "string", "bits", "param", "ph", "number", "op", "self", "semi"]


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str  # what goes into the normalised SQL
    value: str = ""  # decoded value: identifier name (lower-cased when unquoted), string content


def _deny(msg: str) -> GuardDenied:
    return GuardDenied(msg)


def _quote_ident(name: str) -> str:
    if not name:
        raise _deny("could not parse the SQL: zero-length quoted identifier")
    return '"' + name.replace('"', '""') + '"'


def _quote_string(value: str) -> str:
    if "\x00" in value:
        raise _deny("could not parse the SQL: string literal contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


def _skip_continuation(sql: str, j: int) -> int | None:
    """PostgreSQL joins 'a'<whitespace with a newline, -- comments allowed>'b'. Return the index
    of the next opening quote when the literal continues, else None."""
    n = len(sql)
    saw_newline = False
    while j < n:
        c = sql[j]
        if c in " \t\f":
            j += 1
        elif c in "\n\r":
            saw_newline = True
            j += 1
        elif sql.startswith("--", j):
            k = j
            while k < n and sql[k] not in "\n\r":
                k += 1
            if k >= n:
                return None
            j = k
        else:
            break
    if saw_newline and j < n and sql[j] == "'":
        return j
    return None


def _read_quoted(sql: str, i: int, *, backslash: bool) -> tuple[str, int]:
    """Raw content of a '...' literal starting at sql[i] == "'" (with continuation); return
    (raw content with '' collapsed, index after). With backslash=True, backslash pairs are
    kept raw (decoded later) and do not end the literal."""
    n = len(sql)
    out: list[str] = []
    while True:
        j = i + 1
        while True:
            if j >= n:
                raise _deny("could not parse the SQL: unterminated quoted string")
            c = sql[j]
            if c == "'":
                if j + 1 < n and sql[j + 1] == "'":
                    out.append("'")
                    j += 2
                    continue
                j += 1
                break
            if backslash and c == "\\":
                if j + 1 >= n:
                    raise _deny("could not parse the SQL: unterminated quoted string")
                out.append(sql[j : j + 2])
                j += 2
                continue
            out.append(c)
            j += 1
        nxt = _skip_continuation(sql, j)
        if nxt is None:
            return "".join(out), j
        i = nxt


class _SurrogatePairs:
    """Joins escaped UTF-16 surrogate halves (\\uD83D\\uDE00) into one code point, as PostgreSQL does."""

    def __init__(self) -> None:
        self.high: int | None = None

    def join(self, cp: int) -> int | None:
        """The code point, or None while the low half is still to come."""
        if 0xD800 <= cp <= 0xDBFF:
            self.expect_none()
            self.high = cp
            return None
        if 0xDC00 <= cp <= 0xDFFF:
            if self.high is None:
                raise _deny("could not parse the SQL: invalid Unicode surrogate pair")
            cp = 0x10000 + ((self.high - 0xD800) << 10) + (cp - 0xDC00)
            self.high = None
        return cp

    def expect_none(self) -> None:
        if self.high is not None:
            raise _deny("could not parse the SQL: invalid Unicode surrogate pair")


def _decode_e_string(raw: str) -> str:
    buf = bytearray()
    i, n = 0, len(raw)
    pairs = _SurrogatePairs()

    def put_cp(cp: int) -> None:
        if cp == 0 or 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
            raise _deny("could not parse the SQL: invalid Unicode escape in string literal")
        buf.extend(chr(cp).encode("utf-8"))

    while i < n:
        c = raw[i]
        if c != "\\":
            pairs.expect_none()
            buf.extend(c.encode("utf-8"))
            i += 1
            continue
        d = raw[i + 1]
        i += 2
        if d in "uU":
            width = 4 if d == "u" else 8
            h = raw[i : i + width]
            if len(h) != width or not all(ch in "0123456789abcdefABCDEF" for ch in h):
                raise _deny("could not parse the SQL: invalid Unicode escape in string literal")
            i += width
            joined = pairs.join(int(h, 16))
            if joined is not None:
                put_cp(joined)
            continue
        pairs.expect_none()
        if d in "01234567":
            k = i - 1
            m = k
            while m < n and m < k + 3 and raw[m] in "01234567":
                m += 1
            buf.append(int(raw[k:m], 8) & 0xFF)
            i = m
        elif d == "x" and i < n and raw[i] in "0123456789abcdefABCDEF":
            m = i
            while m < n and m < i + 2 and raw[m] in "0123456789abcdefABCDEF":
                m += 1
            buf.append(int(raw[i:m], 16))
            i = m
        else:
            buf.extend({"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}.get(d, d).encode("utf-8"))
    pairs.expect_none()
    if 0 in buf:
        raise _deny("could not parse the SQL: string literal contains a NUL character")
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise _deny("could not parse the SQL: string literal is not valid UTF-8") from None


def _decode_unicode_escapes(raw: str, esc: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    pairs = _SurrogatePairs()
    while i < n:
        c = raw[i]
        if c != esc:
            pairs.expect_none()
            out.append(c)
            i += 1
            continue
        if i + 1 < n and raw[i + 1] == esc:
            out.append(esc)
            i += 2
            continue
        if i + 1 < n and raw[i + 1] == "+":
            h, i = raw[i + 2 : i + 8], i + 8
            width = 6
        else:
            h, i = raw[i + 1 : i + 5], i + 5
            width = 4
        if len(h) != width or not all(ch in "0123456789abcdefABCDEF" for ch in h):
            raise _deny("could not parse the SQL: invalid Unicode escape")
        cp = pairs.join(int(h, 16))
        if cp is None:
            continue
        if cp == 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise _deny("could not parse the SQL: invalid Unicode escape")
        out.append(chr(cp))
    pairs.expect_none()
    return "".join(out)


class _Lexer:
    """PostgreSQL's scanner, as far as the guard needs it. Each `_read_*` method looks at the
    text at `self.i` and either appends one token and moves past it (returning True) or leaves
    everything as it was (False); `tokens` tries them in PostgreSQL's order of precedence."""

    def __init__(self, sql: str, with_params: bool) -> None:
        self.sql = sql
        self.n = len(sql)
        self.with_params = with_params
        self.i = 0
        self.placeholders = 0
        self.toks: list[_Tok] = []

    def tokens(self) -> list[_Tok]:
        readers = (self._read_space, self._read_prefixed, self._read_plain_quoted, self._read_dollar,
                   self._read_number, self._read_word, self._read_percent, self._read_operator)
        while self.i < self.n:
            if not any(read() for read in readers):
                raise _deny(f"could not parse the SQL: unexpected character {self.sql[self.i]!r}")
        return _resolve_unicode(self.toks)

    def _emit(self, tok: _Tok, end: int) -> bool:
        self.toks.append(tok)
        self.i = end
        return True

    def _next(self, k: int = 1) -> str:
        """The character k after the current one, or "" past the end."""
        return self.sql[self.i + k] if self.i + k < self.n else ""

    def _read_space(self) -> bool:
        """A run of whitespace, or a comment (which separates tokens like a space)."""
        sql, i = self.sql, self.i
        if sql[i] in _WS:
            m = _WS_RUN.match(sql, i)
            assert m
            return self._emit(_Tok("ws", m.group()), m.end())
        if sql.startswith("--", i):
            j = i
            while j < self.n and sql[j] not in "\n\r":
                j += 1
            return self._emit(_Tok("ws", " "), j)
        if sql.startswith("/*", i):
            return self._emit(_Tok("ws", " "), self._block_comment_end(i))
        return False

    def _block_comment_end(self, i: int) -> int:
        """The index after the (nested) /* comment starting at i."""
        depth, j = 1, i + 2
        while depth:
            if j >= self.n:
                raise _deny("could not parse the SQL: unterminated /* comment")
            if self.sql.startswith("/*", j):
                depth += 1
                j += 2
            elif self.sql.startswith("*/", j):
                depth -= 1
                j += 2
            else:
                j += 1
        return j

    def _read_prefixed(self) -> bool:
        """E'...', B'...'/X'...', N'...', U&'...' and U&"..." (a prefix only at a token start)."""
        sql, i, c, c2 = self.sql, self.i, self.sql[self.i], self._next()
        if c in "eE" and c2 == "'":
            raw, end = _read_quoted(sql, i + 1, backslash=True)
            v = _decode_e_string(raw)
            return self._emit(_Tok("string", _quote_string(v), v), end)
        if c in "bBxX" and c2 == "'":
            raw, end = _read_quoted(sql, i + 1, backslash=False)
            allowed = "01" if c in "bB" else "0123456789abcdefABCDEF"
            if not all(ch in allowed for ch in raw):
                raise _deny("could not parse the SQL: invalid bit-string literal")
            return self._emit(_Tok("bits", f"{c.upper()}'{raw}'", raw), end)
        if c in "nN" and c2 == "'":
            raw, end = _read_quoted(sql, i + 1, backslash=False)
            return self._emit(_Tok("string", _quote_string(raw), raw), end)
        if c in "uU" and c2 == "&" and self._next(2) in ("'", '"'):
            if self._next(2) == "'":
                raw, end = _read_quoted(sql, i + 2, backslash=False)
                return self._emit(_Tok("ustring", "", raw), end)  # decoded by _resolve_unicode
            name, end = _read_qident(sql, i + 2)
            return self._emit(_Tok("uident", "", name), end)
        return False

    def _read_plain_quoted(self) -> bool:
        """A plain '...' string or a "..." identifier."""
        if self.sql[self.i] == "'":
            raw, end = _read_quoted(self.sql, self.i, backslash=False)
            return self._emit(_Tok("string", _quote_string(raw), raw), end)
        if self.sql[self.i] == '"':
            name, end = _read_qident(self.sql, self.i)
            return self._emit(_Tok("qident", _quote_ident(name), name), end)
        return False

    def _read_dollar(self) -> bool:
        """A $n parameter or a $tag$...$tag$ string; any other "$" is refused."""
        sql, i, n = self.sql, self.i, self.n
        if sql[i] != "$":
            return False
        m = _PARAM.match(sql, i)
        if m:
            if m.end() < n and (_IDENT_START.match(sql, m.end()) or sql[m.end()] == "$"):
                raise _deny("could not parse the SQL: trailing junk after parameter")
            return self._emit(_Tok("param", m.group()), m.end())
        m = _DOLQ.match(sql, i)
        if m:
            delim = m.group()
            end = sql.find(delim, m.end())
            if end < 0:
                raise _deny("could not parse the SQL: unterminated dollar-quoted string")
            v = sql[m.end() : end]
            return self._emit(_Tok("string", _quote_string(v), v), end + len(delim))
        raise _deny('could not parse the SQL: unexpected "$"')

    def _read_number(self) -> bool:
        c, c2 = self.sql[self.i], self._next()
        if not (c in _DIGITS or (c == "." and c2 != "" and c2 in _DIGITS)):
            return False
        m = _NUMBER.match(self.sql, self.i)
        assert m
        return self._emit(_Tok("number", m.group()), m.end())

    def _read_word(self) -> bool:
        """A key word or unquoted identifier, lower-cased in ASCII only (as PostgreSQL does)."""
        if not _IDENT_START.match(self.sql[self.i]):
            return False
        m = _IDENT.match(self.sql, self.i)
        assert m
        word = m.group()
        lowered = "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in word)
        if _ASCII_IDENT.match(word):
            return self._emit(_Tok("ident", word, lowered), m.end())
        # '$' or non-ASCII inside: hand it on as a plain quoted identifier
        return self._emit(_Tok("qident", _quote_ident(lowered), lowered), m.end())

    def _read_percent(self) -> bool:
        """With params, "%s" is a placeholder and "%%" a literal %; any other "%" is refused."""
        if not (self.with_params and self.sql[self.i] == "%"):
            return False
        c2, c3 = self._next(), self._next(2)
        if c2 == "s" and not (c3 and (_IDENT_START.match(c3) or c3 in _DIGITS or c3 == "$")):
            self.placeholders += 1
            return self._emit(_Tok("ph", f"${self.placeholders}"), self.i + 2)
        if c2 == "%":
            return self._emit(_Tok("op", "%"), self.i + 2)
        raise _deny('could not parse the SQL: with params, "%" must be "%s" (a placeholder) or "%%" (a literal %)')

    def _read_operator(self) -> bool:
        """An operator (a run of operator characters, cut before a comment), ";", "::" or a
        one-character token."""
        sql, i, c = self.sql, self.i, self.sql[self.i]
        if c in _OP_CHARS:
            j = i
            while j < self.n and sql[j] in _OP_CHARS and not (self.with_params and sql[j] == "%"):
                if sql.startswith("--", j) or sql.startswith("/*", j):
                    break
                j += 1
            return self._emit(_Tok("op", sql[i:j]), j)
        if c == ";":
            return self._emit(_Tok("semi", ";"), i + 1)
        if c == ":" and self._next() == ":":
            return self._emit(_Tok("op", "::"), i + 2)
        if c in _SELF:
            return self._emit(_Tok("self", c), i + 1)
        return False


def _read_qident(sql: str, i: int) -> tuple[str, int]:
    n = len(sql)
    out: list[str] = []
    j = i + 1
    while True:
        if j >= n:
            raise _deny("could not parse the SQL: unterminated quoted identifier")
        if sql[j] == '"':
            if j + 1 < n and sql[j + 1] == '"':
                out.append('"')
                j += 2
                continue
            j += 1
            break
        out.append(sql[j])
        j += 1
    name = "".join(out)
    if not name:
        raise _deny("could not parse the SQL: zero-length quoted identifier")
    if "\x00" in name:
        raise _deny("could not parse the SQL: identifier contains a NUL character")
    return name, j


def _resolve_unicode(toks: list[_Tok]) -> list[_Tok]:
    """Decode U&'...' / U&"..." with an optional following UESCAPE 'c'."""
    if not any(t.kind in ("ustring", "uident") for t in toks):
        return toks
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind not in ("ustring", "uident"):
            out.append(t)
            i += 1
            continue
        esc = "\\"
        j = i + 1
        while j < len(toks) and toks[j].kind == "ws":
            j += 1
        if j < len(toks) and toks[j].kind == "ident" and toks[j].value == "uescape":
            k = j + 1
            while k < len(toks) and toks[k].kind == "ws":
                k += 1
            if k >= len(toks) or toks[k].kind != "string" or len(toks[k].value) != 1:
                raise _deny("could not parse the SQL: invalid UESCAPE")
            esc = toks[k].value
            if esc in "0123456789abcdefABCDEF+'\" \t\n\r\f":
                raise _deny("could not parse the SQL: invalid UESCAPE character")
            i = k + 1
        else:
            i += 1
        v = _decode_unicode_escapes(t.value, esc)
        if t.kind == "ustring":
            out.append(_Tok("string", _quote_string(v), v))
        else:
            out.append(_Tok("qident", _quote_ident(v), v))
    return out


_WORDISH = re.compile(r"[A-Za-z0-9_$'\"\u0080-\U0010ffff]")


def _join(toks: list[_Tok]) -> str:
    parts: list[str] = []
    prev = ""
    for t in toks:
        s = t.text
        if not s:
            continue
        if prev and (
            (_WORDISH.match(prev[-1]) and _WORDISH.match(s[0]))
            or (prev[-1] in _OP_CHARS and s[0] in _OP_CHARS)
            or (prev[-1] == ":" and s[0] == ":")
        ):
            parts.append(" ")
        parts.append(s)
        prev = s
    return "".join(parts).strip()


# --- tree checks --------------------------------------------------------------------------

_QUERY_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values)

_STATEMENT_KEYWORDS: list[tuple[type, str]] = [
    (exp.Insert, "INSERT"),
    (exp.Update, "UPDATE"),
    (exp.Delete, "DELETE"),
    (exp.Merge, "MERGE"),
    (exp.Create, "CREATE"),
    (exp.Drop, "DROP"),
    (exp.Alter, "ALTER"),
    (exp.TruncateTable, "TRUNCATE"),
    (exp.Copy, "COPY"),
    (exp.Set, "SET"),
    (exp.Transaction, "BEGIN"),
    (exp.Commit, "COMMIT"),
    (exp.Rollback, "ROLLBACK"),
    (exp.Grant, "GRANT"),
    (exp.Revoke, "REVOKE"),
    (exp.Into, "INTO"),
    (exp.Lock, "FOR UPDATE/SHARE"),
]
for _name, _kw in [
    ("Analyze", "ANALYZE"),
    ("Describe", "DESCRIBE"),
    ("Show", "SHOW"),
    ("Use", "USE"),
    ("Kill", "KILL"),
    ("Pragma", "PRAGMA"),
    ("Cache", "CACHE"),
    ("Uncache", "UNCACHE"),
    ("LoadData", "LOAD"),
    ("Refresh", "REFRESH"),
    ("Declare", "DECLARE"),
    ("Execute", "EXECUTE"),
    ("Summarize", "SUMMARIZE"),
    ("Comment", "COMMENT"),
    ("Attach", "ATTACH"),
    ("Detach", "DETACH"),
    ("Install", "INSTALL"),
    ("Export", "EXPORT"),
    ("Put", "PUT"),
    ("Get", "GET"),
]:
    if hasattr(exp, _name):
        _STATEMENT_KEYWORDS.append((getattr(exp, _name), _kw))
_FORBIDDEN_TYPES = tuple(t for t, _ in _STATEMENT_KEYWORDS) + (exp.DML, exp.DDL)
_KEYWORD_OF = dict(_STATEMENT_KEYWORDS)


def _node_keyword(node: exp.Expression) -> str:
    for t, kw in _STATEMENT_KEYWORDS:
        if isinstance(node, t):
            return kw
    return type(node).__name__.upper()


def _ident(node: exp.Expression | None) -> str | None:
    if not isinstance(node, exp.Identifier):
        return None
    return node.name if node.quoted else node.name.lower()


def _check_tree(root: exp.Expression, catalog: SqlCatalog) -> None:
    """Statement structure (sqlglot's reading) and qualified relation names."""
    for node in root.walk():
        if isinstance(node, exp.Command):
            word = str(node.this or "").split(None, 1)[0].upper() if node.this else "COMMAND"
            raise _deny(f'SQL keyword "{word}" is not allowed')
        if isinstance(node, _FORBIDDEN_TYPES):
            if isinstance(node, exp.Into):
                raise _deny("SELECT INTO is not allowed")
            if isinstance(node, exp.Lock):
                raise _deny(
                    "locking clauses (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE) are not allowed"
                )
            raise _deny(f'SQL keyword "{_node_keyword(node)}" is not allowed')
        if isinstance(node, exp.Table):
            _check_relation(node, catalog)
        if isinstance(node, exp.Anonymous):
            _check_call(node, catalog)
        if isinstance(node, exp.Select) and node.args.get("into") is not None:
            raise _deny("SELECT INTO is not allowed")
        if isinstance(node, exp.Select) and node.args.get("locks"):
            raise _deny("locking clauses (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE) are not allowed")


def _check_call(node: exp.Anonymous, catalog: SqlCatalog) -> None:
    """A call sqlglot does not know by name: the name must be one this server allows (a name
    PostgreSQL does not know at all is refused too: the guard cannot tell what it is)."""
    this = node.this
    if isinstance(this, str) and this.lower() in _KEYWORD_FORMS:
        return
    name = _ident(this) if isinstance(this, exp.Expression) else str(this).lower()
    if name is None or (name not in catalog.callable and name != "current_setting"):
        raise _deny(f'function "{name}" is not allowed')


#: Grammar constructs of PostgreSQL written like calls (keywords, never pg_proc names when
#: unquoted) that sqlglot leaves as anonymous calls.
_KEYWORD_FORMS = frozenset({"xmlparse", "xmlserialize", "xmlroot", "xmlpi", "xmlexists", "xmlconcat", "xmlforest"})


def _check_relation(node: exp.Table, catalog: SqlCatalog) -> None:
    rel = _ident(node.this)
    if rel is None:
        return  # a function in FROM: its name was checked with every other name
    schema = _ident(node.args.get("db"))
    if schema is None:
        if rel in catalog.relations:
            raise _deny(f'relation "{rel}" is not allowed')
        return
    if (schema in catalog.system_schemas or schema.startswith("pg_")) and (
        schema,
        rel,
    ) not in catalog.allowed_relations:
        raise _deny(f'relation "{schema}.{rel}" is not allowed')


# Characters that keep a trailing + or - inside an operator (PostgreSQL's scan.l rule).
_OP_KEEP_SIGN = set("~!@#^&|`?%")


def _pg_operators(run: str) -> list[str]:
    """The operators PostgreSQL reads in a run of operator characters: a multi-character
    operator loses trailing + / - unless it contains one of ~!@#^&|`?%."""
    out: list[str] = []
    while run:
        n = len(run)
        if n > 1 and run[-1] in "+-" and not any(c in _OP_KEEP_SIGN for c in run):
            while n > 1 and run[n - 1] in "+-":
                n -= 1
        out.append(run[:n])
        run = run[n:]
    return out


def _readable_setting(solid: list[_Tok], i: int) -> bool:
    """current_setting('<reviewed name>'[, true|false]) with literal arguments, unqualified
    or qualified by pg_catalog (a function of that name elsewhere is not the built-in)."""
    if i >= 1 and solid[i - 1].text == ".":
        if i < 2 or solid[i - 2].kind not in ("ident", "qident") or solid[i - 2].value != "pg_catalog":
            return False
    t = solid[i + 1 : i + 6]
    if len(t) < 3 or t[0].text != "(" or t[1].kind != "string":
        return False
    if t[1].value.lower() not in READABLE_SETTINGS:
        return False
    if t[2].text == ")":
        return True
    return (
        len(t) == 5
        and t[2].text == ","
        and t[3].kind == "ident"
        and t[3].value in ("true", "false")
        and t[4].text == ")"
    )


def _truncated(name: str, limit: int) -> str:
    """The identifier as PostgreSQL stores it: cut to `limit` bytes, at a character boundary."""
    raw = name.encode("utf-8")
    if len(raw) <= limit:
        return name
    return raw[:limit].decode("utf-8", errors="ignore")


def _check_names(toks: list[_Tok], catalog: SqlCatalog) -> None:
    """Every identifier and operator the statement contains, against the catalog's refusals.

    Checked on the tokens PostgreSQL itself reads, not on sqlglot's tree: a name in any
    position (call, attribute notation ``(x).f`` which PostgreSQL may read as ``f(x)``, FROM,
    cast target, qualified or quoted) is refused when it names a function, type or system
    relation that may not run or be read here."""
    solid = [t for t in toks if t.kind != "ws"]
    limit = catalog.max_identifier_length
    for i, t in enumerate(solid):
        if t.kind in ("ident", "qident"):
            for name in {_truncated(t.value, limit), _truncated(t.value.lower(), limit)}:
                if name in catalog.functions and not (name == "current_setting" and _readable_setting(solid, i)):
                    raise _deny(f'function "{name}" is not allowed')
                if name in catalog.types:
                    raise _deny(f'type "{name}" is not allowed (a cast or I/O function behind it may not run)')
                if name in catalog.relations:
                    raise _deny(f'relation "{name}" is not allowed')
        elif t.kind == "op":
            for op in _pg_operators(t.text):
                if op in catalog.operators:
                    raise _deny(f'operator "{op}" is not allowed (the function behind it may not run)')


#: Operators sqlglot's postgres dialect reads as PostgreSQL does (or as some other operator,
#: which does not matter: the tree is only asked about statement structure and relations).
_SQLGLOT_OPERATORS = frozenset(
    "+ - * / % ^ < > = <= >= <> != || ~ ~* !~ !~* ~~ !~~ ~~* !~~* @> <@ && -> ->> #> #>> ? ?| ?&"
    " @@ # & | << >> -|- &< &> <-> #- @? :: =>".split()
)


def _structural_text(toks: list[_Tok], catalog: SqlCatalog) -> str:
    """The text sqlglot parses: the statement with constructs sqlglot cannot read replaced by
    ones of the same shape (any other operator -> "-", ``collation for (`` -> a call,
    ``ORDER BY x USING <op>`` -> ``ORDER BY x``, a trailing ``FOR READ ONLY`` dropped,
    the ``DOCUMENT`` / ``CONTENT`` of ``XMLPARSE`` / ``XMLSERIALIZE`` dropped, the type name
    of a typed literal ``box '...'`` dropped: sqlglot knows few of those types). Only
    for the structure check; PostgreSQL runs the normalised text and every name and operator
    was checked on the real tokens."""
    out: list[_Tok] = []
    solid = [t for t in toks if t.kind != "ws"]
    skip: set[int] = set()
    calls: set[int] = set()  # "collation" of "collation for (...)"
    end = len(solid)
    for i, t in enumerate(solid):
        nxt = solid[i + 1] if i + 1 < len(solid) else None
        if t.kind == "ident" and nxt is not None and nxt.kind == "ident":
            if t.value == "collation" and nxt.value == "for":
                skip.add(id(nxt))
                calls.add(id(t))
            elif t.value == "for" and [x.value for x in solid[i + 1 :]] == ["read", "only"]:
                end = i
        elif (
            t.kind == "ident"
            and t.value in ("xmlparse", "xmlserialize")
            and nxt is not None
            and nxt.text == "("
            and i + 2 < len(solid)
            and solid[i + 2].kind == "ident"
            and solid[i + 2].value in ("document", "content")
        ):
            skip.add(id(solid[i + 2]))  # XMLPARSE(DOCUMENT x) -> xmlparse(x)
        elif t.kind == "ident" and t.value == "using" and nxt is not None and nxt.kind == "op":
            skip.update((id(t), id(nxt)))
        elif t.kind in ("ident", "qident") and nxt is not None and nxt.kind == "string" \
                and t.value in catalog.type_names:
            skip.add(id(t))
    cut = {id(t) for t in solid[end:]}
    for t in toks:
        if id(t) in skip or id(t) in cut:
            continue
        if t.kind == "op":
            out.extend(_Tok("op", op if op in _SQLGLOT_OPERATORS else "-") for op in _pg_operators(t.text))
        elif id(t) in calls:
            out.append(_Tok("ident", "pg_collation_for", "pg_collation_for"))
        else:
            out.append(t)
    return _join(out)


def _first_word(toks: list[_Tok]) -> str:
    for t in toks:
        if t.kind == "ident":
            return t.value.upper()
        if t.kind not in ("ws",) and not (t.kind == "self" and t.text == "("):
            return ""
    return ""


def _parse_query(toks: list[_Tok], catalog: SqlCatalog) -> str:
    text = _join(toks)
    kw = _first_word(toks)
    if kw in REFUSED_LEADING:
        raise _deny(f'SQL keyword "{kw}" is not allowed')
    _check_names(toks, catalog)
    try:
        trees = [t for t in sqlglot.parse(_structural_text(toks, catalog), read="postgres") if t is not None]
    except SqlglotError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _deny(f"could not parse the SQL: {first[:300]}") from None
    except (RecursionError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise _deny(f"could not parse the SQL ({type(e).__name__})") from None
    if len(trees) != 1:
        raise _deny("exactly one SQL statement is allowed")
    root = trees[0]
    inner = root
    while isinstance(inner, (exp.Subquery, exp.Paren)) and isinstance(inner.this, exp.Expression):
        inner = inner.this
    if not isinstance(inner, _QUERY_ROOTS):
        if isinstance(inner, exp.Command) or isinstance(inner, _FORBIDDEN_TYPES):
            _check_tree(inner, catalog)
        word = kw or _node_keyword(inner)
        raise _deny(
            f'SQL keyword "{word}" is not allowed'
            if kw
            else "only SELECT queries (or EXPLAIN of one) are allowed"
        )
    _check_tree(root, catalog)
    return text


_EXPLAIN_OPTIONS = frozenset(
    {"verbose", "costs", "settings", "buffers", "wal", "timing", "summary", "format", "generic_plan"}
)
_EXPLAIN_FORMATS = frozenset({"text", "xml", "json", "yaml"})
_BOOLEAN_WORDS = frozenset({"true", "false", "on", "off"})


def _check_explain(toks: list[_Tok]) -> list[_Tok]:
    """toks: the statement's tokens without whitespace-only ones, starting with EXPLAIN.
    Return the inner statement's tokens."""
    i = 1
    if i < len(toks) and toks[i].kind == "self" and toks[i].text == "(":
        i += 1
        while True:
            if i >= len(toks) or toks[i].kind != "ident":
                raise _deny("could not parse the EXPLAIN options")
            opt = toks[i].value
            if opt in ("analyze", "analyse"):
                raise _deny("EXPLAIN ANALYZE is not allowed (it executes the statement)")
            if opt not in _EXPLAIN_OPTIONS:
                raise _deny(f'EXPLAIN option "{opt.upper()}" is not allowed')
            i += 1
            t = toks[i] if i < len(toks) else None
            if t is not None and not (t.kind == "self" and t.text in ",)"):
                if opt == "format":
                    if t.kind not in ("ident", "qident", "string") or t.value.lower() not in _EXPLAIN_FORMATS:
                        raise _deny("EXPLAIN FORMAT must be TEXT, XML, JSON or YAML")
                elif not (
                    (t.kind in ("ident", "string") and t.value.lower() in _BOOLEAN_WORDS)
                    or (t.kind == "number" and t.text in ("0", "1"))
                ):
                    raise _deny(f"EXPLAIN option {opt.upper()} takes a boolean value")
                i += 1
            elif opt == "format":
                raise _deny("EXPLAIN FORMAT needs a value")
            if i >= len(toks):
                raise _deny("could not parse the EXPLAIN options")
            if toks[i].text == ",":
                i += 1
                continue
            if toks[i].text == ")":
                i += 1
                break
            raise _deny("could not parse the EXPLAIN options")
    else:
        while (
            i < len(toks) and toks[i].kind == "ident" and toks[i].value in ("analyze", "analyse", "verbose")
        ):
            if toks[i].value in ("analyze", "analyse"):
                raise _deny("EXPLAIN ANALYZE is not allowed (it executes the statement)")
            i += 1
    inner = toks[i:]
    if not inner:
        raise _deny("EXPLAIN needs a statement")
    if _first_word(inner) == "EXPLAIN":
        raise _deny('SQL keyword "EXPLAIN" is not allowed here')
    return inner


# --- public API ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedSql:
    """A query the guard accepted. `text` is the normalised SQL to execute (no comments,
    canonical literals, `$n` placeholders); `explain` says it is an EXPLAIN (which cannot run
    through a server-side cursor); `placeholders` counts the %s turned into $n."""

    text: str
    explain: bool
    placeholders: int


def prepare_sql(sql: str, catalog: SqlCatalog, *, with_params: bool = False) -> CheckedSql:
    """Check `sql` against the rules and `catalog` (the connected server's allowlists, see
    connectors/postgres/sql_catalog.py); return what to execute or raise GuardDenied.

    with_params: the call binds `params`; then `%s` is a placeholder and a literal `%`
    operator must be written `%%` (inside string literals, comments and identifiers `%` is
    always just a character). Without params `%` is an ordinary operator character.
    """
    if not isinstance(sql, str):
        raise _deny("could not parse the SQL: not a string")
    if len(sql) > MAX_SQL_CHARS:
        raise _deny(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    toks = _Lexer(sql, with_params).tokens()
    statements: list[list[_Tok]] = [[]]
    for t in toks:
        if t.kind == "semi":
            statements.append([])
        else:
            statements[-1].append(t)
    non_empty = [s for s in statements if any(t.kind != "ws" for t in s)]
    if not non_empty:
        raise _deny("could not parse the SQL: no statement")
    if len(non_empty) > 1:
        raise _deny("exactly one SQL statement is allowed (found more than one, separated by ';')")
    stmt = non_empty[0]
    placeholders = sum(1 for t in stmt if t.kind == "ph")
    if _first_word(stmt) == "EXPLAIN":
        solid = [t for t in stmt if t.kind != "ws"]
        if solid[0].kind != "ident":  # "(EXPLAIN ...)" is not valid SQL
            raise _deny('SQL keyword "EXPLAIN" is not allowed here')
        inner = _check_explain(solid)
        # the inner statement keeps its original spacing
        start = next(k for k, t in enumerate(stmt) if t is inner[0])
        inner_text = _parse_query(stmt[start:], catalog)
        head = _join([t for t in stmt[:start]])
        return CheckedSql(text=f"{head} {inner_text}", explain=True, placeholders=placeholders)
    return CheckedSql(text=_parse_query(stmt, catalog), explain=False, placeholders=placeholders)
