"""An unconfined upstream process (tests only): the UpstreamProcess shape over trio's open_process.

The gateway's own start is the confined one of mcp_servers/process.py; this helper lets the
session and backend tests run a server without the sandbox machinery.
"""

from __future__ import annotations

import os
import signal
import subprocess

import trio


class PlainProcess:
    def __init__(self, process: trio.Process) -> None:
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        self.send_stream = process.stdin
        self.receive_stream = process.stdout
        self.pid = process.pid

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str]) -> PlainProcess:
        process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                                   start_new_session=True)
        return cls(process)

    async def kill_tree(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await self._process.wait()

    def exit_status(self) -> str | None:
        code = self._process.poll()
        if code is None:
            return None
        return f"exit status {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
