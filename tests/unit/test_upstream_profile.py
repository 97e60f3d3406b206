"""What an upstream server may read, write and execute, resolved from its command."""

from __future__ import annotations

import os
import sys

import pytest

from mcp_gateway.connectors.mcp_servers.profile import UnconfinableCommand, elf_interpreter, resolve, shebang
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings

PYTHON = os.path.realpath(sys.executable)


def settings(command: list[str], **kw) -> McpServerSettings:
    return McpServerSettings.model_validate({"command": command, **kw})


def test_the_elf_interpreter_is_read_from_the_program_header():
    interp = elf_interpreter(PYTHON)
    assert interp is not None and os.path.basename(interp).startswith("ld-")
    assert elf_interpreter(__file__) is None  # not an ELF file


def test_a_python_interpreter_executes_itself_and_ld_so_only():
    p = resolve(settings([PYTHON, "-c", "pass"]))
    assert p.execute == [PYTHON, os.path.realpath(elf_interpreter(PYTHON))]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert any(r.endswith(f"/lib/{version}") for r in p.read)  # its standard library
    with open("/proc/self/maps") as maps:
        libc = next(line.split()[-1] for line in maps if "/libc.so" in line or "/libc-" in line)
    libc_dir = os.path.dirname(os.path.realpath(libc))
    assert libc_dir in p.read  # the directory its libraries come from, as ld.so resolves them
    assert p.write == ["/dev/null"]
    assert not {"/etc", "/proc", "/tmp", "/home"} & set(p.read)  # noqa: S108 - paths it must not get


def test_a_venv_entry_script_brings_its_interpreter_and_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(PYTHON)}\n")
    (venv / "bin" / "python").symlink_to(PYTHON)
    entry = venv / "bin" / "mcp-server-x"
    entry.write_text(f"#!{venv}/bin/python\nimport sys\n")
    entry.chmod(0o755)
    p = resolve(settings([str(entry)], filesystem={"read": ["/srv/data"], "write": ["/srv/state"]}))
    assert p.execute[:2] == [str(entry), PYTHON]
    assert str(venv) in p.read and "/srv/data" in p.read
    assert p.write == ["/dev/null", "/srv/state"]


def test_an_egress_adds_the_ca_certificates():
    none = resolve(settings([PYTHON]))
    egress = resolve(settings([PYTHON], network={"allowed_domains": ["example.com"]}))
    assert "/etc/ssl/certs" in egress.read and "/etc/ssl/certs" not in none.read


@pytest.mark.parametrize("line", ["#!/usr/bin/env python3", "#!/usr/bin/env -S node --flag"])
def test_a_script_through_env_is_refused(tmp_path, line):
    script = tmp_path / "s"
    script.write_text(line + "\n")
    script.chmod(0o755)
    assert shebang(str(script))[0] == "/usr/bin/env"
    with pytest.raises(UnconfinableCommand, match="name the interpreter"):
        resolve(settings([str(script)]))


def test_a_command_that_is_not_executable_is_refused(tmp_path):
    data = tmp_path / "data"
    data.write_text("x")
    data.chmod(0o644)
    with pytest.raises(UnconfinableCommand, match="not an executable file"):
        resolve(settings([str(data)]))


def test_filesystem_execute_adds_a_program_with_its_runtime():
    node = "/usr/bin/node"
    if not os.path.exists(node):
        pytest.skip("node is not installed")
    p = resolve(settings([PYTHON], filesystem={"execute": [node]}))
    assert p.execute[:2] == [PYTHON, os.path.realpath(elf_interpreter(PYTHON))]
    assert os.path.realpath(node) in p.execute
    assert any(r.endswith("/lib/node_modules") for r in p.read)
