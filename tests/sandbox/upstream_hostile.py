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
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - the test's URLs, through the proxy
            return {"ok": True, "status": r.status, "body": r.read(4096).decode(errors="replace")}
    except urllib.error.HTTPError as e:
        return {"ok": False, "status": e.code, "body": e.read(4096).decode(errors="replace")}


def tunnel(target, request=""):
    """CONNECT `target` through HTTP_PROXY by hand; the proxy's status line, then what `request` got back."""
    proxy = os.environ["HTTP_PROXY"].removeprefix("http://").rstrip("/")
    host, _, port = proxy.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        body = b""
        if request and " 200 " in status + " ":
            s.sendall(request.encode())
            while chunk := s.recv(4096):
                body += chunk
        return {"ok": " 200 " in status + " ", "status": status, "reply": body.decode(errors="replace")}


def spawn_tree(count=3):
    """Start `count` grandchildren that detach (double fork, setsid) and sleep; their pids as seen here."""
    pids = []
    for _ in range(count):
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
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
        os.waitpid(child, 0)  # the middle process is gone: its child is an orphan now
    return {"ok": True, "pids": pids}


def spawn_zombies(count=3):
    """Orphans that exit at once: someone must reap them (the server, their parent, is gone)."""
    for _ in range(count):
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                os._exit(0)
            os._exit(0)
        os.waitpid(child, 0)
    return {"ok": True}


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


def escape(call):
    """Calls a server could use to leave its process group, or to reach the kernel through io_uring."""
    if call == "setsid":
        os.setsid()
    elif call == "setpgid":
        os.setpgid(0, 0)
    elif call == "unshare_user":  # a user namespace: the first step of many kernel exploits
        import ctypes

        if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
    elif call == "io_uring_setup":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        if libc.syscall(425, 8, params) < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
    return {"ok": True}


def allocate(kind, mib):
    """Map `mib` MiB of memory of `kind` and touch it: shared anonymous, MAP_GROWSDOWN, or the heap."""
    import mmap

    size = mib << 20
    if kind == "heap":
        block = bytearray(size)
        return {"ok": True, "bytes": len(block)}
    flags = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS if kind == "shared" else (
        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x0100)  # MAP_GROWSDOWN
    m = mmap.mmap(-1, size, flags=flags)
    for i in range(0, size, 4096):
        m[i] = 1
    return {"ok": True, "bytes": size}


def exit_now(code):
    sys.stdout.flush()
    os._exit(code)


def whoami():
    return {"ok": True, "pid": os.getpid(), "uid": os.getuid(), "ppid": os.getppid()}


TOOLS = {f.__name__: f for f in (read_file, write_file, execute, connect, udp, kill, environ, proxy_get, tunnel,
                                 spawn_tree, spawn_zombies, threads, flood_stderr, escape, allocate, exit_now,
                                 whoami)}


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
