"""The real gateway process driven over stdio by the official SDK client."""

import trio

from tests.support.gateway_process import audit_lines, error_of, fs_config, sdk_client


def test_list_read_and_deny_through_the_sdk_client(gw_dir):
    config = fs_config(gw_dir)

    async def session():
        async with sdk_client(config) as client:
            tools = (await client.list_tools()).tools
            by_name = {t.name: t for t in tools}
            assert set(by_name) == {"fs.readFile", "fs.listDir"}
            for tool in tools:
                assert tool.annotations.read_only_hint is True
                assert tool.annotations.open_world_hint is False
                assert tool.input_schema["additionalProperties"] is False
                assert tool.output_schema["type"] == "object"

            ok = await client.call_tool("fs.readFile", {"path": "hello.txt"})
            assert not ok.is_error
            assert ok.content[0].text == "hello world\n"
            assert ok.structured_content["content"] == "hello world\n"
            assert ok.structured_content["size"] == 12

            listing = await client.call_tool("fs.listDir", {"path": "."})
            names = {e["name"]: e["type"] for e in listing.structured_content["entries"]}
            assert names == {"hello.txt": "file", "secrets": "directory"}

            outside = await client.call_tool("fs.readFile", {"path": "../config.yaml"})
            assert outside.is_error and outside.content[0].text.startswith("SECURITY_ERROR")
            assert error_of(outside)["error_code"] == "SECURITY_ERROR"

            secret = await client.call_tool("fs.readFile", {"path": "secrets/key.txt"})
            assert secret.is_error and error_of(secret)["error_code"] == "SECURITY_ERROR"
            assert "TOP-SECRET" not in secret.content[0].text

            denied = await client.call_tool("web.fetch", {"url": "https://example.com/"})
            assert denied.is_error and error_of(denied)["error_code"] == "POLICY_DENIED"

            invalid = await client.call_tool("fs.readFile", {"path": 42})
            assert invalid.is_error and error_of(invalid)["error_code"] == "VALIDATION_ERROR"
            return [ok, listing, outside, secret, denied, invalid]

    results = trio.run(session)
    lines = audit_lines(gw_dir)
    assert len(lines) == len(results)
    for line, result in zip(lines, results, strict=True):
        assert line["actor"] == "tester"
        if result.is_error:
            assert line["request_id"] == error_of(result)["request_id"]
            assert line["error_code"] == error_of(result)["error_code"]
    assert [x["decision"] for x in lines] == ["allow", "allow", "deny", "deny", "deny", "deny"]
