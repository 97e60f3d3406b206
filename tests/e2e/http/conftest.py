import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_gw_dir():
    """gw_dir for a gateway shared by a whole module (readable by the workers' uid)."""
    path = Path(tempfile.mkdtemp(prefix="mcp-gw-http-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
