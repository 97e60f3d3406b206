"""Command line: serve, check-config, call, approve-tools, doctor."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mcp_gateway.config import ConfigError, GatewayConfig, default_config_path, load_config, resolve_env_tokens
from mcp_gateway.connectors import KINDS

# Exit codes of a command stopped by Ctrl-C and by a closed stdout, as a shell reports them.
EXIT_INTERRUPTED = 128 + 2
EXIT_BROKEN_PIPE = 128 + 13


def _load(path: str | None, host: bool = True) -> GatewayConfig:
    """The config as served; `host` False leaves out what comes from this host (the
    environment's tokens) for a config meant for another machine."""
    try:
        config = load_config(path if path else default_config_path())
        return resolve_env_tokens(config, os.environ) if host else config
    except ConfigError as e:
        print(e, file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as e:  # noqa: BLE001 - a config file gets one line, never a traceback
        print(f"{path or default_config_path()}: cannot load config ({type(e).__name__}: {e}); "
              "this is a gateway bug, please report it with the file", file=sys.stderr)
        raise SystemExit(1) from None


def _preflight_refusal(config: GatewayConfig, http: str) -> int | None:
    """Exit code 1 with every reason when this host cannot serve the config, else None."""
    from mcp_gateway.preflight import failures, preflight

    problems = failures(preflight(config, http=http))  # type: ignore[arg-type]
    for text in problems:
        print(f"mcp-gateway: cannot start: {text}", file=sys.stderr)
    return 1 if problems else None


def _forget_env_tokens(config: GatewayConfig) -> None:
    """The hashes are kept; the tokens themselves leave the environment before any process
    (zygote, worker, upstream server) is forked from this one. unsetenv() alone would leave
    the bytes in the process's initial environment block (/proc/<pid>/environ, and every
    forked copy): they are overwritten first."""
    import ctypes

    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_void_p
    getenv.argtypes = [ctypes.c_char_p]
    for t in config.server.http.auth.bearer_tokens:
        if t.token_env:
            value = getenv(t.token_env.encode())
            if value:
                ctypes.memset(value, 0, len(ctypes.string_at(value)))
            os.environ.pop(t.token_env, None)


def _stdio_banner(config: GatewayConfig) -> None:
    import logging

    log = logging.getLogger("mcp_gateway")
    log.info("serving MCP on stdio (config %s, actor %r): waiting for an MCP client on stdin",
             config.source, config.server.actor)
    if sys.stdin.isatty():
        log.info("stdin is a terminal, not an MCP client: start the gateway from a client instead "
                 "(README.md, \"Connect a client\"); Ctrl-C stops it")


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from mcp_gateway.supervisor.service import configure_logging
    from mcp_gateway.workers.zygote import start_zygotes

    config = _load(args.config)
    configure_logging()
    refusal = _preflight_refusal(config, http="rules")  # before forking anything
    if refusal is not None:
        return refusal
    _forget_env_tokens(config)
    try:
        zygotes = start_zygotes(config)
        if config.server.transport == "http":
            from mcp_gateway.supervisor.http import serve_http

            return trio.run(serve_http, config, zygotes)
        from mcp_gateway.supervisor.stdio import claim_stdio

        _stdio_banner(config)
        wire_in, wire_out = claim_stdio()
        if trio.run(_serve_stdio, config, zygotes, wire_in, wire_out):
            return EXIT_INTERRUPTED
    except Exception as e:
        return _report_startup_failure(e)
    return 0


def _report_startup_failure(exc: Exception) -> int:
    """Exit code 1 with the operator's message when a pool cannot start or its zygote died;
    anything else is re-raised."""
    from mcp_gateway.supervisor.pool import ZygoteGone

    failure = _startup_failure(exc)
    if failure is None:
        raise exc
    print(f"mcp-gateway: {'stopped' if isinstance(failure, ZygoteGone) else 'cannot start'}: {failure}",
          file=sys.stderr)
    return 1


def _startup_failure(exc: BaseException) -> BaseException | None:
    """The PoolStartError behind `exc`, which trio may have wrapped in exception groups."""
    from mcp_gateway.supervisor.pool import PoolStartError

    if isinstance(exc, PoolStartError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_failure(inner)
            if found is not None:
                return found
    return None


async def _serve_stdio(config: GatewayConfig, zygotes, wire_in: int, wire_out: int) -> bool:
    """Serve until stdin ends or a signal stops it; True when Ctrl-C (SIGINT) stopped it."""
    import trio

    from mcp_gateway.supervisor.service import open_gateway
    from mcp_gateway.supervisor.stdio import serve_stdio_session

    async with open_gateway(config, zygotes) as gateway:
        stopper = _StdioSignals(gateway)
        with stopper.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stopper.run)
                await serve_stdio_session(gateway, wire_in, wire_out, stopper.drain)
                nursery.cancel_scope.cancel()
        return stopper.interrupted


class _StdioSignals:
    """SIGTERM drains (no new requests are read; calls in flight finish, are audited and
    answered). SIGINT (Ctrl-C) stops at once: calls in flight are cancelled, their workers
    killed, each audited CANCELLED "the gateway stopped"; the process exits 130."""

    def __init__(self, gateway) -> None:
        import trio

        self.gateway = gateway
        self.drain = trio.Event()
        self.scope = trio.CancelScope()
        self.interrupted = False

    async def run(self) -> None:
        import logging
        import signal

        import trio

        log = logging.getLogger("mcp_gateway")
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGINT:
                    log.info("SIGINT: stopping now; calls in flight are cancelled")
                    self.interrupted = True
                    self.gateway.stopping = True
                    self.scope.cancel()
                    return
                if not self.drain.is_set():
                    log.info("SIGTERM: finishing the calls in flight, then exiting")
                    self.drain.set()


def describe(config: GatewayConfig) -> str:
    """The effective policy, as an operator reads it."""
    from mcp_gateway.supervisor.policy import Policy

    policy = Policy(config)
    p = config.policy
    instances = config.instances()
    lines = [f"config: {config.source}", f"transport: {config.server.transport}"
             + (f" on {config.server.http.host}:{config.server.http.port}" if config.server.transport == "http" else
                f" (actor {config.server.actor})"),
             f"audit log: {config.audit.path}",
             f"default deny: {'on' if p.default_deny else 'OFF'}",
             f"connectors enabled: {', '.join(f'{i.name} ({i.kind})' for i in instances) or 'none'}"]
    if config.server.transport == "http" and config.server.http.auth.bearer_tokens:
        callers = [t.actor for t in config.server.http.auth.bearer_tokens]
    else:
        callers = [config.server.actor]
    actors = list(dict.fromkeys([*callers, *p.actors]))
    for actor in actors:
        tools = policy.exposed_tools(actor)
        lines.append(f"tools exposed to {actor}: {', '.join(tools) or 'none'}")
        for tool in tools:
            timeout_ms, max_bytes = policy.limits(tool, actor)
            lines.append(f"  {tool}: timeout {timeout_ms} ms, max {max_bytes} bytes")
    for i in instances:
        lines.append(f"{i.name} ({i.kind}): {KINDS[i.kind].describe(i)}")
    if p.rate_limit.per_actor or p.rate_limit.global_:
        lines.append(f"rate limits: per actor {p.rate_limit.per_actor}, global {p.rate_limit.global_}")
    return "\n".join(lines)


def cmd_check_config(args: argparse.Namespace) -> int:
    from mcp_gateway.preflight import failures, preflight, warnings

    config = _load(args.config, host=not args.schema_only)
    print(describe(config))
    if args.schema_only:
        print("host checks: skipped (--schema-only)")
        return 0
    findings = preflight(config)
    problems, notes = failures(findings), warnings(findings)
    for text in problems:
        print(f"mcp-gateway check-config: {text}", file=sys.stderr)
    for text in notes:
        print(f"mcp-gateway check-config: warning: {text}", file=sys.stderr)
    verdict = f"{len(problems)} failed (see stderr)" if problems else "passed"
    print(f"host checks: {verdict}" + (f", {len(notes)} warning(s) (see stderr)" if notes else ""))
    return 1 if problems else 0


def cmd_call(args: argparse.Namespace) -> int:
    import trio

    from mcp_gateway.supervisor.service import open_gateway
    from mcp_gateway.workers.zygote import start_zygotes

    config = _load(args.config)
    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as e:
        print(f"mcp-gateway call: the arguments are not valid JSON: {e}", file=sys.stderr)
        return 2
    refusal = _preflight_refusal(config, http="none")
    if refusal is not None:
        return refusal

    async def one_call():
        async with open_gateway(config, zygotes) as gateway:
            await gateway.discovery_settled()  # an upstream server's tools exist once it listed them
            return await gateway.call(args.tool, arguments, args.actor or config.server.actor)

    try:
        zygotes = start_zygotes(config)
        outcome = trio.run(one_call)
    except Exception as e:
        return _report_startup_failure(e)
    if outcome.is_error:
        print(json.dumps({"isError": True, **outcome.error_payload()}, ensure_ascii=False, indent=2))
        return 1
    from mcp_gateway.supervisor.results import decode

    answer = decode(outcome.answer)  # the CallToolResult a client would get
    print(json.dumps({"isError": False, "request_id": outcome.request_id,
                      "structuredContent": answer["structuredContent"]}, ensure_ascii=False, indent=2))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from mcp_gateway.doctor import run_doctor

    return run_doctor(_load(args.config))


def cmd_approve_tools(args: argparse.Namespace) -> int:
    """Show what each pinned upstream server offers against its pins; pin it when the operator agrees."""
    from mcp_gateway.connectors.mcp_servers.approve import approve_tools
    from mcp_gateway.supervisor.service import configure_logging

    config = _load(args.config)
    configure_logging()
    return approve_tools(config, args.instance or [], dry_run=args.dry_run, yes=args.yes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="Security-first MCP gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "config file (default: ./config.yaml, else the bundled deny-all default)"

    p = sub.add_parser("serve", help="serve MCP (stdio or HTTP, per server.transport)")
    p.add_argument("--config", help=config_help)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config, check it against this host, print the effective policy")
    p.add_argument("--config", help=config_help)
    p.add_argument("--schema-only", action="store_true",
                   help="only validate the file (a config for another machine): skip the checks of this "
                        "host (paths as the worker identity, audit log, TLS files, port, token variables)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("call", help="run one tool call through policy, audit and a worker")
    p.add_argument("--config", help=config_help)
    p.add_argument("--actor", help="actor recorded in the audit log (default: server.actor)")
    p.add_argument("tool")
    p.add_argument("arguments", nargs="?", default="{}", help="JSON object of arguments")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("approve-tools", help="review the tools of upstream MCP servers with pin_tools and pin them "
                                             "(docs/UPSTREAM.md)")
    p.add_argument("--config", help=config_help)
    p.add_argument("--instance", action="append", help="only this upstream server (repeatable; default: every one "
                                                       "with pin_tools: true)")
    p.add_argument("--yes", action="store_true", help="approve without asking")
    p.add_argument("--dry-run", action="store_true", help="only show the changes (exit 1 when some await approval)")
    p.set_defaults(func=cmd_approve_tools)

    p = sub.add_parser("doctor", help="report active sandbox layers and run the production checklist")
    p.add_argument("--config", help=config_help)
    p.set_defaults(func=cmd_doctor)

    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`check-config | head`): stop quietly, and keep the
        # interpreter's own final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except BaseException as e:
        if _only_interrupts(e):
            return EXIT_INTERRUPTED
        raise


def _only_interrupts(exc: BaseException) -> bool:
    """Ctrl-C, however trio's nurseries wrapped it on the way out."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(e) for e in exc.exceptions)
    return False


if __name__ == "__main__":
    sys.exit(main())
