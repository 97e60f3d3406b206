"""Real MCP clients (TypeScript SDK, MCP Inspector) against the real gateway: shared pieces.

The cancelled call is a web.fetch to `StallServer`, a loopback server that reads the request and
never answers: the call can only end by cancellation (its timeout is a minute), and the
connection closing is the proof that the worker holding it was stopped.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.support.gateway_process import audit_lines, fs_config, wait_until

CANCEL_TIMEOUT_MS = 60_000   # far past every bounded wait below: only a cancel ends the call in time
STOPPED_WITHIN_S = 5.0       # bound on waiting for the stalled upstream to see its connection close


class StallServer:
    """Accepts one HTTP request at a time, touches `started`, never answers; `closed` is set when
    the client (the gateway's worker) drops the connection."""

    def __init__(self, directory: Path) -> None:
        self.started = directory / "stall-started"
        self.closed = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stall"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.2)
                data = b""
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        self.closed.set()
                        break
                    data += chunk
                    if b"\r\n\r\n" in data and not self.started.exists():
                        self.started.touch()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


def clients_config(directory: Path, stall: StallServer, server: dict | None = None) -> Path:
    """fs.readFile/fs.listDir on directory/data, and web.fetch allowed to reach the stall server only."""
    return fs_config(
        directory,
        policy={"allow_tools": ["fs.readFile", "fs.listDir", "web.fetch"],
                "per_tool": {"web.fetch": {"timeout_ms": CANCEL_TIMEOUT_MS}}},
        connectors={"http_fetch": {"enabled": True, "allowed_domains": ["*"],
                                   "allow_internal_cidrs": ["127.0.0.1/32"], "allowed_ports": [stall.port]}},
        **({"server": server} if server else {}))


wait_for = wait_until  # (predicate, timeout, what)


def assert_refusal(result: dict, code: str, directory: Path) -> None:
    """DESIGN.md, Errors: a tool error whose text starts with the code and gives the reason, no
    structuredContent, the structured error in _meta, and the request id of its audit line."""
    assert "thrown" not in result, f"the client saw a protocol error, not the refusal: {result}"
    assert result["isError"] is True, result
    assert "structuredContent" not in result, result
    text = result["content"][0]["text"]
    assert text.startswith(f"{code}: "), text
    error = result["_meta"]["io.mcp-gateway/error"]
    assert error["error_code"] == code and error["reason"] and error["reason"] in text, result
    (line,) = [x for x in audit_lines(directory) if x["request_id"] == error["request_id"]]
    assert line["decision"] == "deny" and line["error_code"] == code, line


def assert_good_read(result: dict, directory: Path) -> None:
    assert "thrown" not in result, result
    assert result["isError"] is False, result
    assert result["structuredContent"]["content"] == "hello world\n", result
    request_id = result["_meta"]["io.mcp-gateway/request_id"]
    (line,) = [x for x in audit_lines(directory) if x["request_id"] == request_id]
    assert line["tool"] == "fs.readFile" and line["decision"] == "allow", line


def assert_cancel_stopped_the_worker(stall: StallServer, directory: Path, *, by_client: bool = True) -> None:
    """The stalled fetch's connection closed (its worker was stopped), and the call has exactly one
    audit line, written within the same bound. `by_client=False`: the Ctrl-C reached the gateway
    itself (a stdio server in the client's process group), so it may be the gateway that stopped."""
    assert stall.closed.wait(STOPPED_WITHIN_S), \
        "the cancelled call's worker still holds its upstream connection: the cancel did not stop it"
    wait_for(lambda: [x for x in audit_lines(directory) if x["tool"] == "web.fetch"], STOPPED_WITHIN_S,
             "no audit line for the cancelled call")
    (line,) = [x for x in audit_lines(directory) if x["tool"] == "web.fetch"]
    assert line["error_code"] == "CANCELLED", line
    if by_client:  # cancelled by the client, and said so: not a shutdown of the gateway
        assert "gateway stopped" not in line["reason"], line
