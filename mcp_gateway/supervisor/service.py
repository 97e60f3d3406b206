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
from mcp_gateway.process_title import set_process_title
from mcp_gateway.supervisor.audit import AuditLog
from mcp_gateway.supervisor.gateway import Gateway, Outcome
from mcp_gateway.supervisor.pool import WorkerPool

log = logging.getLogger("mcp_gateway")

Zygotes = dict[str, tuple[int, socket.socket]]  # connector -> (zygote pid, its control socket)


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@asynccontextmanager
async def open_gateway(config: GatewayConfig, zygotes: Zygotes,
                       observer: Callable[[Outcome, float], None] | None = None) -> AsyncIterator[Gateway]:
    """Start the worker pools and the audit log; yield the gateway; tear everything down on exit."""
    set_process_title("supervisor")
    audit = AuditLog(config.audit.path)
    if audit.last_error:
        log.error("%s: every tool call will be refused until it is fixed (then send SIGHUP)", audit.last_error)
    pools: dict[str, WorkerPool] = {}
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
        if config.connectors.postgres.enabled:
            nursery.start_soon(_warn_if_db_role_not_read_only, config)
        try:
            yield Gateway(config, pools, audit, observer)
        finally:
            nursery.cancel_scope.cancel()
            audit.close()


async def _warn_if_db_role_not_read_only(config: GatewayConfig) -> None:
    """Least privilege is the second wall behind the SQL guard: say loudly when it is missing."""
    from mcp_gateway.connectors.postgres.role import check_role

    pg = config.connectors.postgres
    result = await trio.to_thread.run_sync(check_role, pg, "mcp-gateway-check", abandon_on_cancel=True)
    if result.problems:
        log.warning("SECURITY WARNING: database role %s is not read-only: it %s. db.query then rests on the "
                    "SQL guard alone; fix the role (docs/POSTGRES.md) and run `mcp-gateway doctor`.",
                    pg.user, "; ".join(result.problems))
    elif result.problems is None:
        log.warning("database role %s could not be checked for least privilege (%s); run `mcp-gateway doctor`",
                    pg.user, result.error)


async def _reopen_audit_on_sighup(audit: AuditLog) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            audit.reopen()
            if audit.last_error:
                log.error("SIGHUP: %s", audit.last_error)
            else:
                log.info("SIGHUP: audit log %s reopened", audit.path)

