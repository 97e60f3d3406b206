"""A small stdio MCP server of the tests' own, raw JSON-RPC, that can misbehave on request.

Tools: echo (validated text, structured result), slow (sleeps; records notifications/cancelled
in $CANCEL_LOG), crash (exits mid-call), garbage (writes a non-JSON line), big (a result of
`size` bytes), fail (isError), bad_structured (breaks its outputSchema), grow (adds a tool and
sends notifications/tools/list_changed). $STANDIN_MODE=never-init never answers initialize;
$ECHO_DESCRIPTION replaces echo's description (pinning tests); $STANDIN_PID_FILE gets its pid.
"""

import json
import os
import sys
import threading
import time

lock = threading.Lock()
extra_tools: list[dict] = []


def send(message: dict) -> None:
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def tools() -> list[dict]:
    text = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 100, "pattern": "^[^!]*$"}},
            "required": ["text"], "additionalProperties": False}
    return [
        {"name": "echo", "title": "Echo", "description": os.environ.get("ECHO_DESCRIPTION", "Echo the text back."),
         "inputSchema": text,
         "outputSchema": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
         "annotations": {"readOnlyHint": True, "destructiveHint": False}},
        {"name": "slow", "description": "Sleep `seconds`.",
         "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
        {"name": "crash", "description": "Exit mid-call.", "inputSchema": {"type": "object"}},
        {"name": "garbage", "description": "Write garbage.", "inputSchema": {"type": "object"}},
        {"name": "big", "description": "A big result.",
         "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"}}}},
        {"name": "fail", "description": "Report an error.", "inputSchema": {"type": "object"}},
        {"name": "bad_structured", "description": "Break the output schema.", "inputSchema": {"type": "object"},
         "outputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
        {"name": "grow", "description": "Add a tool.", "inputSchema": {"type": "object"}},
        {"name": "bad name!", "description": "Withheld: invalid name.", "inputSchema": {"type": "object"}},
        {"name": "remote_ref", "description": "Withheld: remote $ref.",
         "inputSchema": {"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/schema.json"}}}},
        *extra_tools,
    ]


def text_result(text: str, **extra) -> dict:
    return {"content": [{"type": "text", "text": text, "annotations": {"audience": ["user"], "priority": 1}}],
            "_meta": {"upstream": "meta"}, **extra}


def call(request_id, name: str, args: dict) -> None:
    if name == "echo":
        result = text_result(args["text"], structuredContent={"echo": args["text"]})
    elif name == "slow":
        time.sleep(float(args.get("seconds", 1)))
        result = text_result("slept")
    elif name == "crash":
        os._exit(3)
    elif name == "garbage":
        with lock:
            sys.stdout.write("this is not JSON\n")
            sys.stdout.flush()
        return
    elif name == "big":
        result = text_result("x" * int(args.get("size", 10)))
    elif name == "fail":
        result = text_result("the thing failed", isError=True)
    elif name == "bad_structured":
        result = text_result("n", structuredContent={"n": "not an integer"})
    elif name == "grow":
        extra_tools.append({"name": f"grown{len(extra_tools)}", "description": "Grown.",
                            "inputSchema": {"type": "object"}})
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        result = text_result("grown")
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"unknown tool {name}"}})
        return
    send({"jsonrpc": "2.0", "id": request_id, "result": result})


def main() -> None:
    if os.environ.get("STANDIN_PID_FILE"):
        with open(os.environ["STANDIN_PID_FILE"], "w") as f:
            f.write(str(os.getpid()))
    never_init = os.environ.get("STANDIN_MODE") == "never-init"
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if method == "initialize":
            if never_init:
                continue
            send({"jsonrpc": "2.0", "id": request_id, "result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "protocol-standin", "version": "1.0"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools()}})
        elif method == "tools/call":
            params = message["params"]
            threading.Thread(target=call, args=(request_id, params["name"], params.get("arguments") or {}),
                             daemon=True).start()
        elif method == "notifications/cancelled" and os.environ.get("CANCEL_LOG"):
            with open(os.environ["CANCEL_LOG"], "a") as f:
                f.write(json.dumps(message["params"]) + "\n")
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})


if __name__ == "__main__":
    main()
