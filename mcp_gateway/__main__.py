import logging
import os
import sys

from mcp_gateway.cli import main

code = main()
# Everything the command owned is closed, flushed and reaped by now (workers, zygotes, the audit
# log, sockets): skip the interpreter's teardown of ~800 modules, 0.5-2 s of CPU that every gateway
# exit and every check-config would otherwise pay.
logging.shutdown()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except OSError:  # the reader went away; nothing left to tell it
        pass
os._exit(code)
