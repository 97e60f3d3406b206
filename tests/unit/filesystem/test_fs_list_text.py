"""fs.listDir's text rendering: one line per entry, whatever the names contain. A name with a
newline or tab must not forge an entry (or a column) in what the agent reads."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.connectors.filesystem.tools import LIST_DIR
from tests.support.fs_tree import Tree, listdir, make_connector

render = LIST_DIR.render_text


def test_names_with_control_characters_cannot_forge_entries(tree: Tree) -> None:
    forged = "x\nfile\t0\tpasswords.txt"
    for name in (forged, "tab\there", "cr\rreturn", "esc\x1b[31mred", "back\\slash", "line\u2028sep"):
        (tree.root / "sub" / name).write_text("")
    fs = make_connector([tree.root], [])
    try:
        result = listdir(fs, "sub")
    finally:
        fs.close()
    text = render(result)
    lines = text.split("\n")
    assert len(lines) == len(result["entries"]), text
    assert all(line.count("\t") == 2 for line in lines), text
    assert not any(line.split("\t")[2] == "passwords.txt" for line in lines)
    assert "x\\nfile\\t0\\tpasswords.txt" in text
    assert "back\\\\slash" in text and "esc\\x1b[31mred" in text and "line\\u2028sep" in text


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8))
def test_property_one_line_and_three_columns_per_entry(names: list[str]) -> None:
    entries = [{"name": n, "type": "file", "size": 1} for n in names]
    lines = render({"path": "/x", "entries": entries}).split("\n")
    assert len(lines) == len(entries)
    for line, name in zip(lines, names, strict=True):
        kind, size, shown = line.split("\t")
        assert (kind, size) == ("file", "1")
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in shown), shown
        assert "\\" not in name or "\\\\" in shown
