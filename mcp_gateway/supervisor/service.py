"""Running the gateway once its zygotes are forked (`workers.zygote.start_zygotes`, before any
thread): the pools, the audit log, SIGHUP; trio owns everything."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import Backend, Instance
from mcp_gateway.process_title import set_process_title
from mcp_gateway.supervisor.audit import AuditLog
from mcp_gateway.supervisor.gateway import Gateway, Outcome
from mcp_gateway.supervisor.pool import WorkerPool

log = logging.getLogger("mcp_gateway")

Zygotes = dict[str, tuple[int, socket.socket]]  # instance -> (zygote pid, its control socket)


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@asynccontextmanager
async def open_gateway(config: GatewayConfig, zygotes: Zygotes,
                       observer: Callable[[Outcome, float], None] | None = None) -> AsyncIterator[Gateway]:
    """Start the worker pools and the audit log; yield the gateway; tear everything down on exit."""
    set_process_title(None, "supervisor")
    audit = AuditLog(config.audit.path)
    if audit.last_error:
        log.error("%s: every tool call will be refused until it is fixed (then send SIGHUP)", audit.last_error)
    pools: dict[str, Backend] = {}
    async with trio.open_nursery() as nursery:
        for name, (pid, control) in zygotes.items():
            pool = WorkerPool(name, config, pid, control)
            # Not awaited: the transport answers `initialize` while workers start; a
            # call that comes first queues for its worker, and a pool that cannot
            # start (a required sandbox layer is missing) stops the whole gateway. Once
            # started, a pool heals itself (its zygote is restarted) and never raises.
            nursery.start_soon(pool.run)
            pools[name] = pool
        nursery.start_soon(_reopen_audit_on_sighup, audit)
        for instance in config.instances():
            nursery.start_soon(_log_startup_warnings, instance)
        gateway = Gateway(config, pools, audit, observer)
        for instance in config.instances():
            kind = KINDS[instance.kind]
            if kind.backend == "own":  # e.g. upstream MCP servers: started here, healing themselves
                backend = kind.start_backend(instance, config, gateway.catalogue)
                nursery.start_soon(backend.run)
                pools[instance.name] = backend
        try:
            yield gateway
        finally:
            nursery.cancel_scope.cancel()
            audit.close()


async def _log_startup_warnings(instance: Instance) -> None:
    """The kind's blocking start-up checks (a database role that is not read-only...), in a thread:
    they only warn, and never delay serving."""
    kind = KINDS[instance.kind]
    for warning in await trio.to_thread.run_sync(kind.startup_warnings, instance, abandon_on_cancel=True):
        log.warning("%s", warning)


async def _reopen_audit_on_sighup(audit: AuditLog) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            audit.reopen()
            if audit.last_error:
                log.error("SIGHUP: %s", audit.last_error)
            else:
                log.info("SIGHUP: audit log %s reopened", audit.path)

