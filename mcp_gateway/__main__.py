import sys

from mcp_gateway.cli import main

sys.exit(main())
