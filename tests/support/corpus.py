"""The shared attack corpora: one case a line, '⏎' for a newline inside a case, '#' comments.

Looked up in $MCPGW_ATTACKS_DIR, then in ../shared/attacks beside the checkout (the project's
live corpus, which grows), then in tests/attacks (a copy, so a lone clone still tests them).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import REPO

SQL_ACCEPT = "sql_accept.txt"
SQL_REJECT = "sql_reject.txt"


def attack_dirs() -> list[Path]:
    dirs = [Path(os.environ["MCPGW_ATTACKS_DIR"])] if os.environ.get("MCPGW_ATTACKS_DIR") else []
    return [*dirs, REPO.parent / "shared" / "attacks", REPO / "tests" / "attacks"]


def load_corpus(name: str) -> list[str]:
    for d in attack_dirs():
        path = d / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return [x.replace("⏎", "\n") for x in lines if x.strip() and not x.lstrip().startswith("#")]
    raise FileNotFoundError(f"attack corpus {name} not found in {[str(d) for d in attack_dirs()]}")
