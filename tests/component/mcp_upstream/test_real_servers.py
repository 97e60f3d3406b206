"""The four real upstream servers (npm and PyPI) discovered and called through the backend:
their real schemas compile under the bounded checker and their real results pass it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from mcp_gateway.connectors.mcp_servers.backend import UpstreamBackend
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.ipc.messages import CallFailed, CallOk, CallRequest
from tests.component.mcp_upstream.test_backend import Published, answer, until
from tests.support.upstream_plain import PlainProcess
from tests.support.upstream_servers import command

# server: (tool, good arguments, check of the result, arguments its schema refuses)
CASES = {
    "memory": ("read_graph", {}, lambda r: r["structuredContent"] == {"entities": [], "relations": []},
               ("search_nodes", {"query": 5})),
    "everything": ("get-sum", {"a": 2, "b": 3}, lambda r: "5" in r["content"][0]["text"],
                   ("get-sum", {"a": "two", "b": 3})),
    "time": ("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
             lambda r: r["structuredContent"]["target"]["timezone"] == "Asia/Tokyo",
             ("convert_time", {"time": "12:00"})),
    "fetch": (None, None, None, ("fetch", {"url": "http://127.0.0.1:9/", "max_length": "a lot"})),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_server_is_discovered_and_called(name: str, tmp_path: Path) -> None:
    argv = command(name)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MEMORY_FILE_PATH": str(tmp_path / "m.json")}
    tool, args, check, (bad_tool, bad_args) = CASES[name]

    async def main() -> None:
        published = Published()
        backend = UpstreamBackend(name, McpServerSettings(command=argv), lambda: PlainProcess.start(argv, env),
                                  published, None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.run)
            await until(lambda: backend.state == "ready", "ready")
            assert published.latest.tools and not published.latest.withheld, published.latest.withheld
            if tool is not None:
                reply = await backend.call(CallRequest("r1", f"{name}.{tool}", args, 20_000, 1 << 20),
                                           trio.current_time() + 20)
                assert isinstance(reply, CallOk), reply
                assert check(answer(reply)), answer(reply)
            bad = await backend.call(CallRequest("r2", f"{name}.{bad_tool}", bad_args, 20_000, 1 << 20),
                                     trio.current_time() + 20)
            assert isinstance(bad, CallFailed) and bad.error_code == "VALIDATION_ERROR", bad
            nursery.cancel_scope.cancel()

    trio.run(main)
