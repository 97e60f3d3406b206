"""Helpers shared by every test folder and by bench/: the gateway as a process, the throwaway
PostgreSQL cluster, the attack corpora, the Node clients, the sandbox probes."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
