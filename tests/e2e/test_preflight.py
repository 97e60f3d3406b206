"""The first five minutes: serve, call, check-config and doctor agree on what this host can
serve, every refusal is one precise line, and the process ends quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.gateway_process import REPO, fs_config, gateway_env, worker_pids
from tests.support.http_gateway import SERVING, HttpGateway, McpHttp


def _gateway(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcp_gateway", *args], input="", capture_output=True, text=True,
                          env=env or gateway_env(), cwd=cwd, timeout=90)


def _edit(config: Path, change) -> Path:
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data))
    return config


def _assert_all_refuse(config: Path, *needles: str, doctor: bool = False) -> None:
    """The same config through every command that checks it (doctor, the slowest, when asked)."""
    for command in ("serve", "check-config", *(["doctor"] if doctor else [])):
        out = _gateway(command, "--config", str(config))
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        text = out.stdout + out.stderr
        assert "Traceback" not in text, (command, text)
        for needle in needles:
            assert needle in text, (command, needle, text)


# --- filesystem paths, as the worker identity ---------------------------------------------


def test_a_data_directory_the_workers_cannot_read_is_refused_everywhere(gw_dir):
    config = fs_config(gw_dir)
    data = gw_dir / "data"
    # As root the workers take uids of sandbox.uid_range, which a root-owned 0700 directory shuts out; as
    # another user the workers keep that user's uid, which a 0000 directory shuts out.
    data.chmod(0o700 if os.geteuid() == 0 else 0o000)
    try:
        _assert_all_refuse(config, f"allowed path {data} cannot be read by the workers", "Permission denied",
                           "drwx------" if os.geteuid() == 0 else "d---------", doctor=True)
        serve = _gateway("serve", "--config", str(config))
        assert serve.stderr.startswith(f"mcp-gateway: cannot start: allowed path {data} cannot be read"), serve.stderr
        if os.geteuid() == 0:  # the probe took a uid of the range, as a worker does
            assert "from sandbox.uid_range" in serve.stderr and "chmod o+rx" in serve.stderr
    finally:
        data.chmod(0o755)
    doctor = _gateway("doctor", "--config", str(config))
    assert f"PASS  allowed path {data} is readable by" in doctor.stdout


def test_missing_paths_and_files_are_named(gw_dir):
    config = fs_config(gw_dir)
    _edit(config, lambda c: c["connectors"]["filesystem"].update(
        allowed_paths=[str(gw_dir / "data"), str(gw_dir / "nope" / "deeper"), str(gw_dir / "data" / "hello.txt")],
        denied_paths=[str(gw_dir / "data" / "secrest")]))
    missing = gw_dir / "nope"
    _assert_all_refuse(config, f"allowed path {missing / 'deeper'} does not exist ({missing} is missing)",
                       f"allowed path {gw_dir / 'data' / 'hello.txt'} is not a directory",
                       f"denied path {gw_dir / 'data' / 'secrest'} does not exist")


def test_doctor_never_passes_a_filesystem_connector_without_a_usable_path(gw_dir):
    config = fs_config(gw_dir)
    _edit(config, lambda c: c["connectors"]["filesystem"].update(allowed_paths=[str(gw_dir / "gone")],
                                                                 denied_paths=[]))
    out = _gateway("doctor", "--config", str(config))
    assert out.returncode == 1
    assert "FAIL  instance fs has no usable allowed path" in out.stdout


# --- what check-config used to pass and serve refused ---------------------------------------


def _http(config: Path, **http) -> Path:
    return _edit(config, lambda c: c.update(server={"transport": "http",
                                                    "http": {"host": "127.0.0.1", "port": 0, **http}}))


def test_an_exposed_listener_without_tokens_is_refused_by_check_config_too(gw_dir):
    _assert_all_refuse(_http(fs_config(gw_dir), host="0.0.0.0"), "server.http.auth.bearer_tokens is empty")


def test_tls_files_must_exist_and_load(gw_dir):
    config = _http(fs_config(gw_dir), certfile="missing.pem", keyfile="missing.key")
    _assert_all_refuse(config, f"TLS file {gw_dir / 'missing.pem'} does not exist", doctor=True)
    (gw_dir / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (gw_dir / "key.pem").write_text("nothing\n")
    _assert_all_refuse(_http(config, certfile="cert.pem", keyfile="key.pem"),
                       "do not load as a TLS certificate and its private key")


def test_beside_the_running_gateway_its_port_in_use_is_a_warning_and_a_second_serve_fails(gw_dir):
    """check-config and doctor bind the port once: next to the gateway serving this very config they
    find it in use, which is expected there (WARN, exit 0); `serve` on it still refuses to start."""
    config = _http(fs_config(gw_dir))
    with HttpGateway(config) as running:
        port = int(running.base.rsplit(":", 1)[1])
        same = _http(config, port=port)  # what the running gateway serves, its port written down
        check = _gateway("check-config", "--config", str(same))
        doctor = _gateway("doctor", "--config", str(same))
        serve = _gateway("serve", "--config", str(same))
        assert running.proc.poll() is None, running.stderr()
    in_use = f"server.http.port {port}: 127.0.0.1:{port} is already in use by another process"
    assert check.returncode == 0, check.stderr
    assert f"mcp-gateway check-config: warning: {in_use}" in check.stderr
    assert "host checks: passed, 1 warning(s) (see stderr)" in check.stdout
    assert f"WARN  {in_use}" in doctor.stdout, doctor.stdout
    assert not [line for line in doctor.stdout.splitlines() if line.startswith("FAIL") and str(port) in line]
    assert serve.returncode == 1
    assert f"mcp-gateway: cannot start: cannot listen on 127.0.0.1:{port}" in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr + check.stderr + doctor.stdout


def test_a_misspelt_actor_is_an_error(gw_dir):
    config = fs_config(gw_dir, policy={"actors": {"testr": {"deny_tools": ["fs.readFile"]}}})
    _assert_all_refuse(config, "policy.actors.testr: no caller has this actor (did you mean 'tester'?)")
    call = _gateway("call", "--config", str(config), "fs.readFile", '{"path": "hello.txt"}')
    assert call.returncode == 1 and "policy.actors.testr" in call.stderr


def test_the_default_audit_path_belongs_to_the_config_directory(gw_dir, tmp_path):
    config = fs_config(gw_dir)
    _edit(config, lambda c: c.pop("audit"))
    out = _gateway("call", "--config", str(config), "fs.readFile", '{"path": "hello.txt"}', cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (gw_dir / "audit.jsonl").exists() and not (tmp_path / "audit.jsonl").exists()


# --- config files that are not configs -----------------------------------------------------


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


BAD_FILES = {
    "not-utf8": (b"server:\n  name: caf\xe9\n", "not UTF-8 text (invalid byte 0xe9 on line 2)"),
    "deep-flow": (b"[" * 20_000 + b"]" * 20_000, "nested more than 64 levels"),
    "deep-block": ("".join(f"{' ' * i}k{i}:\n" for i in range(1000)).encode(), "nested more than 64 levels"),
    "alias-bomb": (_alias_bomb().encode(), "too many values"),
    "duplicate-key": (b"policy: {}\npolicy: {default_deny: false}\n", "the key 'policy' is given twice"),
    "tab": (b"policy:\n\tdefault_deny: true\n", "not valid YAML: line 2, column 1"),
    "python-tag": (b"server: !!python/object/apply:os.system [id]\n", "not valid YAML"),
    "huge": (b"# " + b"x" * (2 * 1024 * 1024) + b"\n", "larger than 1048576 bytes"),
}


@pytest.mark.parametrize("kind", [*BAD_FILES, "directory", "fifo", "/dev/zero"])
def test_a_bad_config_file_gets_one_line(tmp_path, kind):
    path = tmp_path / "config.yaml"
    expected = "cannot read config: it is "
    if kind in BAD_FILES:
        content, expected = BAD_FILES[kind]
        path.write_bytes(content)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # nobody writes: a read would block for ever
    else:
        path = Path(kind)
    # Every command loads the config the same way: serve and doctor are asked too, for a few.
    commands = ("check-config", "serve", "doctor") if kind in ("not-utf8", "deep-flow", "fifo") else ("serve",)
    for command in commands:
        out = _gateway(command, "--config", str(path))
        assert out.returncode == 1, (command, out.stderr)
        assert len(out.stderr.splitlines()) == 1 and expected in out.stderr, (command, out.stderr)
        assert out.stdout == ""


# --- quiet endings -------------------------------------------------------------------------


def test_check_config_into_a_closed_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway", "check-config", "--config",
                             str(REPO / "config.example.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=gateway_env(), cwd=REPO)
    proc.stdout.close()  # `| head` that has already gone (long before the gateway prints)
    err = proc.stderr.read()
    assert proc.wait(60) == 141
    assert err == b""


def test_ctrl_c_stops_serve_quietly_with_130(gw_dir):
    """`make run` typed into a terminal: it says what it waits for, and Ctrl-C ends it."""
    import pty

    terminal, stdin = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway", "serve", "--config", str(fs_config(gw_dir))],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=gateway_env(), start_new_session=True)
    os.close(stdin)
    err = b""
    deadline = time.monotonic() + 30
    while b"workers ready" not in err:
        assert time.monotonic() < deadline and proc.poll() is None, err
        err += os.read(proc.stderr.fileno(), 65536)
    assert b"serving MCP on stdio" in err and b"waiting for an MCP client on stdin" in err
    assert b'stdin is a terminal, not an MCP client' in err and b'"Connect a client"' in err
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    rest = proc.stderr.read()
    assert proc.wait(20) == 130
    os.close(terminal)
    assert b"Traceback" not in rest and len(rest.splitlines()) <= 2, rest.decode()


# --- the local HTTP example, as is --------------------------------------------------------


def test_the_local_http_example_runs_with_a_token_from_the_environment(gw_dir):
    example = (REPO / "examples" / "local-http.yaml").read_text()
    assert example.count("port: 3000") == 1
    (gw_dir / "examples").mkdir()
    (gw_dir / "data" / "secrets").mkdir(parents=True)
    (gw_dir / "data" / "hello.txt").write_text("hello world\n")
    config = gw_dir / "examples" / "local-http.yaml"
    config.write_text(example.replace("port: 3000", "port: 0"))  # the one change: a free port
    token = "t" * 40
    env = {**gateway_env(), "MCP_GATEWAY_TOKEN": token}
    assert _gateway("check-config", "--config", str(config), env=gateway_env()).returncode == 1  # token unset
    stderr = gw_dir / "gateway.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (m := SERVING.search(stderr.read_text())):
            assert time.monotonic() < deadline and proc.poll() is None, stderr.read_text()
            time.sleep(0.05)
        with McpHttp(m.group(1), token=token) as mcp:
            mcp.initialize()
            result = mcp.call("fs.readFile", {"path": "hello.txt"})
            assert not result["isError"], result
        with McpHttp(m.group(1), token="wrong" * 8) as other:
            assert other.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401
        lines = [json.loads(x) for x in (gw_dir / "audit.jsonl").read_text().splitlines()]
        assert [x["actor"] for x in lines] == ["local-agent"]
        # The token left the environment (its bytes too) before any zygote or worker was forked
        # from the supervisor. Workers are not dumpable: only root reads their environ.
        pids = [proc.pid, *(worker_pids(proc.pid) if os.geteuid() == 0 else [])]
        assert len(pids) > 1 or os.geteuid() != 0
        for pid in pids:
            assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        proc.terminate()
        proc.wait(20)
