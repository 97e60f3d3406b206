# Two commands on a fresh machine: `make run` and `make test`. Both set themselves up.
.PHONY: run test bench lint setup

CONFIG ?= config.example.yaml

setup:
	@scripts/bootstrap.sh run

# stdout is the MCP wire: setup talks on stderr, then the gateway takes over the process.
run:
	@scripts/bootstrap.sh run
	@exec .venv/bin/python -m mcp_gateway serve --config $(CONFIG)

test:
	@scripts/test.sh

bench:
	@scripts/bootstrap.sh test
	@.venv/bin/python -m bench

lint:
	@scripts/bootstrap.sh test
	@.venv/bin/ruff check mcp_gateway tests bench
