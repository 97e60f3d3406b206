"""Nothing outside a connector kind's own folder names the kind or one of its tools.

A kind is registered in one place (`mcp_gateway/connectors/__init__.py`); everything else reaches
it through that list (`KINDS`, `ConnectorKind`, `Instance`, the catalogue). So this reads every
file of mcp_gateway/, scripts/ and bench/ outside the kinds' folders and refuses:

* a string literal that is a kind's name (`"postgres"`, `b"filesystem"`): naming it as a key;
* any text naming a seed tool (`fs.readFile`) or a kind's config section (`connectors.postgres`);
* an attribute that is a kind's name (`config.connectors.filesystem`).

English prose is not naming ("a full filesystem"), and neither are docstrings; docs, tests and
the example configs may name anything.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import seed_name

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("mcp_gateway", "scripts", "bench")
REGISTRY = "mcp_gateway/connectors/__init__.py"

KIND_NAMES = frozenset(KINDS)
SEED_TOOLS = frozenset(seed_name(k, s) for k in KINDS.values() if k.seed_instance for s in k.static_tools)
NAMING = re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(t) for t in sorted(SEED_TOOLS)) + r")(?!\w)"
                    r"|\bconnectors\.(?:" + "|".join(sorted(KIND_NAMES)) + r")\b")


def _own_folder(rel: Path) -> bool:
    return rel.parts[:2] == ("mcp_gateway", "connectors") and len(rel.parts) > 3 and rel.parts[2] in KIND_NAMES


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            lines.add(body[0].lineno)
    return lines


def python_namings(text: str) -> list[tuple[int, str]]:
    """(line, what) for every naming of a kind or seed tool in Python source."""
    tree = ast.parse(text)
    docstrings = _docstring_lines(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            value = node.value.decode(errors="replace") if isinstance(node.value, bytes) else node.value
            if value in KIND_NAMES:
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Attribute) and node.attr in KIND_NAMES:
            found.append((node.lineno, f".{node.attr}"))
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)) \
                and tok.start[0] not in docstrings:
            found += [(tok.start[0], m.group(0)) for m in NAMING.finditer(tok.string)]
    return found


def text_namings(text: str) -> list[tuple[int, str]]:
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1) for m in NAMING.finditer(line)]


def _project_files(top: str) -> list[Path]:
    """The files of the project under `top`: the tracked ones in a git checkout, so that what a
    bench run leaves behind (bench/.peers, bench/results, gitignored) is not scanned; every file in
    a copy without .git (the make test passes run from such copies)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", top],
                            capture_output=True, check=False)
    if listed.returncode == 0 and listed.stdout:
        return sorted(REPO / name for name in listed.stdout.decode().split("\0") if name)
    return sorted(p for p in (REPO / top).rglob("*") if ".peers" not in p.parts and "results" not in p.parts)


def scanned_files() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in _project_files(top):
            rel = path.relative_to(REPO)
            if path.is_file() and "__pycache__" not in rel.parts and rel.as_posix() != REGISTRY \
                    and not _own_folder(rel):
                out.append(path)
    return out


def test_the_scanner_sees_every_form_of_naming():
    source = ('"""a docstring may say fs.readFile"""\nx = config.connectors.postgres\nkey = "filesystem"\n'
              'b"http_fetch" in cmd\nmsg = f"call fs.readFile now"\n'
              'hint = "see connectors.http_fetch.allowed_domains"\nprose = "a full filesystem"\n')
    assert [what for _, what in sorted(python_namings(source))] == [
        ".postgres", "'filesystem'", "b'http_fetch'", "fs.readFile", "connectors.http_fetch"]
    assert text_namings("tools: [db.query]\nthe postgres server\n") == [(1, "db.query")]


def test_nothing_outside_a_kinds_folder_names_a_kind_or_its_tools():
    files = scanned_files()
    assert len(files) > 50 and any(p.suffix == ".sh" for p in files)
    offences = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = python_namings(text) if path.suffix == ".py" else text_namings(text)
        offences += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in found]
    assert offences == [], "\n".join(offences)
