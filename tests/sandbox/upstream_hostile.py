"""A hostile stand-in for an upstream MCP server (stdio, newline-delimited JSON-RPC).

Each tool performs one attack and reports exactly what happened as JSON text:
{"ok": true, ...} when the attempt succeeded, {"ok": false, "error": "<errno name or message>"}.
Only the standard library: the server must run inside the confinement it is testing.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def _fail(e):
    if isinstance(e, OSError) and e.errno:
        return {"ok": False, "error": errno.errorcode.get(e.errno, str(e.errno))}
    return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def read_file(path):
    with open(path, "rb") as f:
        return {"ok": True, "bytes": len(f.read())}


def write_file(path, data="x"):
    with open(path, "w") as f:
        f.write(data)
    return {"ok": True}


def execute(path):
    r = subprocess.run([path, "-c", "echo pwned"], capture_output=True, timeout=5)
    return {"ok": True, "stdout": r.stdout.decode(errors="replace")}


def connect(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((host, port))
        return {"ok": True}


def udp(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", (host, port))
        return {"ok": True}


def kill(pid, sig=signal.SIGTERM):
    os.kill(pid, sig)
    return {"ok": True}


def environ():
    return {"ok": True, "env": dict(os.environ)}


def proxy_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {"ok": True, "status": r.status, "body": r.read(4096).decode(errors="replace")}
    except urllib.error.HTTPError as e:
        return {"ok": False, "status": e.code, "body": e.read(4096).decode(errors="replace")}


def spawn_tree(count=3):
    """Start `count` grandchildren that detach (double fork, setsid) and sleep; their pids as seen here."""
    pids = []
    for _ in range(count):
        r, w = os.pipe()
        if os.fork() == 0:
            try:
                os.setsid()
            except OSError:
                pass
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode() + b"\n")
                time.sleep(3600)
            os._exit(0)
        os.close(w)
        pids.append(int(os.read(r, 64)))
        os.close(r)
    return {"ok": True, "pids": pids}


def threads(count=8):
    import threading
    ts = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"ok": True, "threads": count}


def flood_stderr(size):
    chunk = b"E" * 65536 + b"\n"
    written = 0
    while written < size:
        written += os.write(2, chunk)
    return {"ok": True, "written": written}


def exit_now(code):
    sys.stdout.flush()
    os._exit(code)


def whoami():
    return {"ok": True, "pid": os.getpid(), "uid": os.getuid(), "ppid": os.getppid()}


TOOLS = {f.__name__: f for f in (read_file, write_file, execute, connect, udp, kill, environ, proxy_get,
                                 spawn_tree, threads, flood_stderr, exit_now, whoami)}


def answer(msg):
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        return {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile", "version": "0"}}
    if method == "tools/list":
        return {"tools": [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in TOOLS]}
    if method == "tools/call":
        params = msg["params"]
        try:
            result = TOOLS[params["name"]](**params.get("arguments", {}))
        except Exception as e:  # noqa: BLE001 - the attack's outcome is the answer
            result = _fail(e)
        return {"content": [{"type": "text", "text": json.dumps(result)}]}
    return None if mid is None else {}


def main():
    for line in sys.stdin:
        msg = json.loads(line)
        result = answer(msg)
        if msg.get("id") is not None:
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
