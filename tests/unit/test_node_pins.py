"""scripts/node/package.json pins exact versions, and its lockfile locks those very versions."""

import json
import re

from tests.support.gateway_process import REPO

NODE = REPO / "scripts" / "node"


def test_node_test_tools_are_pinned_exactly_and_locked():
    pins = json.loads((NODE / "package.json").read_text())["dependencies"]
    lock = json.loads((NODE / "package-lock.json").read_text())
    assert pins and all(re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", v) for v in pins.values()), pins
    assert lock["packages"][""]["dependencies"] == pins
    for name, version in pins.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
