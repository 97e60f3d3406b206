"""What an upstream server's Landlock ruleset grants, resolved from its command by the system.

Execute (files only): the command's program, the interpreter its `#!` line names (one level,
as the kernel does; `#!/usr/bin/env` is refused: it would need PATH and a second program),
and the ELF interpreter (ld.so) of each; the same for each `filesystem.execute` program.
Every path is taken through realpath: Landlock checks the file itself, not the name it was
reached by.

Read: the directories of the shared libraries each ELF program links, as its own ld.so
resolves them (`ld.so --list`, which maps the libraries without running the program), and
the ld.so cache; for node, its installation prefix; for a Python interpreter, its standard
library and, when the command lives in a venv, that venv; a few files every runtime opens
(/dev/null read-write, /dev/urandom, the time zone database); with an egress proxy, the CA
certificates (TLS runs end to end through CONNECT). Then `filesystem.read`, and
`filesystem.write` writable. Nothing else: no /proc, /etc, /home, /tmp.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from dataclasses import dataclass, field

from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings

ELF_MAGIC = b"\x7fELF"
PT_INTERP = 3
SHEBANG_MAX = 256
# Files every runtime may open whatever its command.
COMMON_READ = ("/etc/ld.so.cache", "/dev/urandom", "/dev/random", "/etc/localtime", "/usr/share/zoneinfo",
               "/etc/ssl/openssl.cnf")
COMMON_WRITE = ("/dev/null",)
CA_PATHS = ("/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/pki/tls/certs", "/etc/ca-certificates")
_LIST_LINE = re.compile(r"=>\s+(/\S+)|^\s*(/\S+)\s+\(0x")


class UnconfinableCommand(Exception):
    """The command cannot be confined as configured; the message says why (operator text)."""


@dataclass
class RuntimeProfile:
    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    execute: list[str] = field(default_factory=list)


def elf_interpreter(path: str) -> str | None:
    """PT_INTERP of a 64- or 32-bit little-endian ELF file; None for a static binary or a non-ELF."""
    with open(path, "rb") as f:
        head = f.read(64)
        if not head.startswith(ELF_MAGIC) or head[5] != 1:
            return None
        is64 = head[4] == 2
        if is64:
            phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
        else:
            phoff, phentsize, phnum = struct.unpack_from("<I", head, 28)[0], *struct.unpack_from("<HH", head, 42)
        for i in range(min(phnum, 256)):
            f.seek(phoff + i * phentsize)
            ph = f.read(phentsize)
            p_type = struct.unpack_from("<I", ph, 0)[0]
            if p_type != PT_INTERP:
                continue
            if is64:
                offset, size = struct.unpack_from("<Q", ph, 8)[0], struct.unpack_from("<Q", ph, 32)[0]
            else:
                offset, size = struct.unpack_from("<I", ph, 4)[0], struct.unpack_from("<I", ph, 16)[0]
            if size > 4096:
                return None
            f.seek(offset)
            return f.read(size).rstrip(b"\0").decode()
    return None


def shebang(path: str) -> list[str] | None:
    with open(path, "rb") as f:
        head = f.read(SHEBANG_MAX)
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    return line.split(None, 1) if line else None


def library_dirs(program: str, interpreter: str) -> list[str]:
    """Directories of the libraries `program` links, as its own ld.so resolves them."""
    try:
        out = subprocess.run([interpreter, "--list", program], capture_output=True, timeout=10, check=False,
                             env={}, stdin=subprocess.DEVNULL).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UnconfinableCommand(f"could not list the libraries of {program} with {interpreter}: {e}") from None
    dirs: list[str] = []
    for line in out.splitlines():
        m = _LIST_LINE.search(line)
        if m:
            lib = os.path.realpath(m.group(1) or m.group(2))
            dirs += [os.path.dirname(lib), os.path.dirname(os.path.abspath(m.group(1) or m.group(2)))]
    return list(dict.fromkeys(dirs))


class _Resolver:
    def __init__(self) -> None:
        self.profile = RuntimeProfile()

    def program(self, path: str, depth: int = 0) -> None:
        """Grant execute on `path` (real file), its `#!` interpreter and ELF interpreter."""
        real = os.path.realpath(path)
        if not os.path.isfile(real) or not os.access(real, os.X_OK):
            raise UnconfinableCommand(f"{path} is not an executable file")
        self.profile.execute.append(real)
        line = shebang(real)
        if line is not None:
            if depth > 0:
                raise UnconfinableCommand(f"{path}: an interpreter that is itself a script is not supported")
            if os.path.basename(line[0]) == "env":
                raise UnconfinableCommand(f"{path} starts with '#!{line[0]}': name the interpreter in `command` "
                                          "instead "
                                    "(the server gets no PATH)")
            self.profile.read.append(real)
            self.program(line[0], depth + 1)
            self.runtime_files(line[0])
            return
        interp = elf_interpreter(real)
        if interp is not None:
            self.profile.execute.append(os.path.realpath(interp))
            self.profile.read += library_dirs(real, interp)
        self.runtime_files(path)

    def runtime_files(self, named: str) -> None:
        """What a known runtime reads beyond its libraries (by the name it is run as)."""
        real = os.path.realpath(named)
        base = os.path.basename(real)
        prefix = os.path.dirname(os.path.dirname(real))
        if base in ("node", "nodejs"):
            self.profile.read += [os.path.join(prefix, "lib", "node_modules"), os.path.join(prefix, "share", "nodejs")]
        m = re.fullmatch(r"python(\d+\.\d+)", base)
        if m:
            self.profile.read.append(os.path.join(prefix, "lib", f"python{m.group(1)}"))
            venv = os.path.dirname(os.path.dirname(os.path.abspath(named)))
            if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
                self.profile.read.append(venv)


def resolve(settings: McpServerSettings) -> RuntimeProfile:
    """The rule paths of one instance. Raises UnconfinableCommand for a command that cannot be confined."""
    r = _Resolver()
    r.program(settings.command[0])
    for extra in settings.filesystem.execute:
        r.program(str(extra))
    program_dir = os.path.dirname(os.path.abspath(settings.command[0]))
    venv = os.path.dirname(program_dir)
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):  # a venv's entry script: the venv itself
        r.profile.read.append(venv)
    p = r.profile
    p.read += list(COMMON_READ)
    if settings.network != "none":
        p.read += list(CA_PATHS)
    p.read += [str(x) for x in settings.filesystem.read]
    p.write += list(COMMON_WRITE) + [str(x) for x in settings.filesystem.write]
    for attr in ("read", "write", "execute"):
        setattr(p, attr, list(dict.fromkeys(getattr(p, attr))))
    return p
