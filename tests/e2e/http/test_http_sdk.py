"""The SDK's own client over Streamable HTTP, and the same calls over stdio and HTTP agree."""

import httpx2
import pytest
import trio
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.gateway_process import audit_lines, error_of, sdk_client
from tests.support.http_gateway import HttpGateway, http_config, sha256_hex, stdio_variant

TOKEN = "sdk-client-token-abcdef"  # noqa: S105

CALLS = [
    ("fs.readFile", {"path": "hello.txt"}),
    ("fs.readFile", {"path": "hello.txt", "encoding": "base64"}),
    ("fs.listDir", {"path": "."}),
    ("fs.readFile", {"path": "../config.yaml"}),
    ("fs.readFile", {"path": "secrets/key.txt"}),
    ("fs.readFile", {"path": "missing.txt"}),
    ("fs.readFile", {"path": 42}),
    ("fs.readFile", {"path": "hello.txt", "extra": 1}),
    ("web.fetch", {"url": "https://example.com/"}),
    ("no.such.tool", {}),
]


def _normalize(result) -> dict:
    structured = dict(error_of(result) if result.is_error else result.structured_content)
    rid = structured.pop("request_id", None)
    text = result.content[0].text
    if rid:
        text = text.replace(rid, "<rid>")
    return {"is_error": result.is_error, "structured": structured, "text": text}


async def _run_calls(client) -> tuple[list[str], list[dict]]:
    tools = sorted(t.name for t in (await client.list_tools()).tools)
    return tools, [_normalize(await client.call_tool(name, args)) for name, args in CALLS]


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from _leaves(e)
    else:
        yield exc


def _http_client(url: str, token: str):
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=30)))


def test_sdk_client_over_http_matches_stdio(gw_dir):
    config = http_config(gw_dir,
                         http={"auth": {"bearer_tokens": [{"actor": "tester", "sha256": sha256_hex(TOKEN)}]}})
    stdio_config = stdio_variant(config)

    async def over_stdio():
        async with sdk_client(stdio_config) as client:
            return await _run_calls(client)

    async def over_http(url):
        async with _http_client(url, TOKEN) as client:
            return await _run_calls(client)

    stdio_tools, stdio_results = trio.run(over_stdio)
    with HttpGateway(config) as gw:
        http_tools, http_results = trio.run(over_http, gw.url)

        async def bad_token():
            async with _http_client(gw.url, "not-the-token") as client:
                await client.list_tools()

        with pytest.raises(BaseException) as refused:  # noqa: B017 - the SDK wraps the 401 in groups
            trio.run(bad_token)
        assert any(isinstance(e, MCPError) for e in _leaves(refused.value)), refused.value

    assert http_tools == stdio_tools == ["fs.listDir", "fs.readFile"]
    assert http_results == stdio_results
    assert http_results[0]["structured"]["content"] == "hello world\n"
    assert [r["structured"].get("error_code") for r in http_results[3:]] == [
        "SECURITY_ERROR", "SECURITY_ERROR", "NOT_FOUND", "VALIDATION_ERROR", "VALIDATION_ERROR",
        "POLICY_DENIED", "POLICY_DENIED"]
    lines = audit_lines(gw_dir)
    assert len(lines) == 2 * len(CALLS)
    assert [x["args_sha256"] for x in lines[:len(CALLS)]] == [x["args_sha256"] for x in lines[len(CALLS):]]
    assert [x["error_code"] for x in lines[:len(CALLS)]] == [x["error_code"] for x in lines[len(CALLS):]]
