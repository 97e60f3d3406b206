"""The official MCP conformance suite (@modelcontextprotocol/conformance), every server scenario,
against the gateway over stateful and stateless HTTP.

The suite (pinned in scripts/node/package-lock.json, run on Node 22 from .cache/node) cannot
send a bearer token, so this gateway runs on loopback without tokens (every caller is
server.actor). Each scenario the suite lists has a verdict below, and docs/HTTP.md's table says
the same (a test holds them equal):

- pass: applies to a gateway of these tools and passes; `na_checks` are the checks inside it
  that need a feature the gateway does not offer (they may fail; every other check must not).
- vacuous: the suite accepts the gateway's "unknown tool" refusal of its fixture tool as a pass.
  Not counted as a pass: the test only holds that the refusal is what made it pass.
- n/a: needs a feature the gateway does not offer (prompts, resources, sampling...).

In every scenario, every JSON-RPC message the gateway sent must be valid per the spec's schema
(the suite's wire-schema-valid check).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.gateway_process import REPO
from tests.support.http_gateway import HttpGateway, http_config
from tests.support.node_clients import CONFORMANCE, node_env, package_version, require_node

MODES = ("stateful", "stateless")
DOC = REPO / "docs" / "HTTP.md"


@dataclass(frozen=True)
class Verdict:
    kind: str                                   # "pass" | "vacuous" | "n/a"
    why: str = ""
    na_checks: dict[str, str] = field(default_factory=dict)


PASS = Verdict("pass")
TOOLS_ONLY = "the gateway serves tools only: no prompts, resources or completions (Method not found)"
NO_LOGGING = ("no `logging` capability: the gateway logs for operators (stderr, audit log), never "
              "to the agent")
FIXTURE_TOOL = ("needs the suite's own fixture tool (image, audio, embedded resource, 2020-12 "
                "schema, progress); a gateway of file, web and database tools has none")
NO_CALLBACK = ("needs a tool that asks the client something (sampling, elicitation, roots, "
               "input_required results); the gateway's tools never call back to the client")
NO_TASKS = ("tasks extension not offered: every call is synchronous and bounded by its timeout")
NO_SKILLS = "skills extension not offered (the suite itself skips every check)"
NO_SESSION = "stateless: no sessions, so the suite has nothing to check"
VACUOUS = Verdict("vacuous", "passes only because the suite accepts the refusal of its unknown "
                             "fixture tool (`POLICY_DENIED: unknown tool`)")


def na(why: str) -> Verdict:
    return Verdict("n/a", why)


def per_mode(stateful: Verdict, stateless: Verdict) -> dict[str, Verdict]:
    return {"stateful": stateful, "stateless": stateless}


SCENARIOS: dict[str, Verdict | dict[str, Verdict]] = {
    "server-initialize": PASS,
    "server-session-lifecycle": per_mode(PASS, na(NO_SESSION)),
    "server-stateless": Verdict("pass", na_checks={
        "sep-2575-server-rejects-undeclared-capability": NO_CALLBACK,
        "sep-2575-missing-capability-http-400": NO_CALLBACK}),
    "ping": PASS,
    "tools-list": PASS,
    "dns-rebinding-protection": PASS,
    "http-header-validation": PASS,
    "caching": Verdict("pass", na_checks={
        "sep-2549-prompts-list-caching-hints": TOOLS_ONLY,
        "sep-2549-resources-list-caching-hints": TOOLS_ONLY,
        "sep-2549-resources-templates-list-caching-hints": TOOLS_ONLY,
        "sep-2549-resources-read-caching-hints": TOOLS_ONLY}),
    "server-sse-multiple-streams": per_mode(PASS, na(NO_SESSION)),
    "input-required-result-unsupported-methods": PASS,
    "tools-call-simple-text": VACUOUS,
    "tools-call-error": VACUOUS,
    "input-required-result-ignore-extra-params": VACUOUS,
    "input-required-result-missing-input-response": VACUOUS,
    "input-required-result-validate-input": VACUOUS,
    "server-sse-polling": na("informational only: the suite records what it saw and checks nothing"),
    "logging-set-level": na(NO_LOGGING),
    "tools-call-with-logging": na(NO_LOGGING),
    "completion-complete": na(TOOLS_ONLY),
    "sep-2164-resource-not-found": na(TOOLS_ONLY),
    "http-custom-header-server-validation": na("no tool declares `x-mcp-header` parameters"),
    **{s: na(TOOLS_ONLY) for s in (
        "resources-list", "resources-read-text", "resources-read-binary", "resources-templates-read",
        "resources-subscribe", "resources-unsubscribe", "prompts-list", "prompts-get-simple",
        "prompts-get-with-args", "prompts-get-embedded-resource", "prompts-get-with-image")},
    **{s: na(FIXTURE_TOOL) for s in (
        "tools-call-image", "tools-call-audio", "tools-call-embedded-resource", "tools-call-mixed-content",
        "json-schema-2020-12", "tools-call-with-progress")},
    **{s: na(NO_CALLBACK) for s in (
        "tools-call-sampling", "tools-call-elicitation", "elicitation-sep1034-defaults",
        "elicitation-sep1330-enums", "input-required-result-basic-elicitation",
        "input-required-result-basic-sampling", "input-required-result-basic-list-roots",
        "input-required-result-request-state", "input-required-result-multiple-input-requests",
        "input-required-result-multi-round", "input-required-result-non-tool-request",
        "input-required-result-result-type", "input-required-result-tampered-state",
        "input-required-result-capability-check")},
    **{s: na(NO_TASKS) for s in (
        "tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields", "tasks-request-state-removal",
        "tasks-mrtr-input", "tasks-request-headers", "tasks-dispatch-and-envelope",
        "tasks-status-notifications", "tasks-required-task-error", "tasks-mrtr-composition")},
    **{s: na(NO_SKILLS) for s in (
        "sep-2640-skills-directory", "sep-2640-skills-enumeration", "sep-2640-skills-manifest")},
}


def verdict(scenario: str, mode: str) -> Verdict:
    v = SCENARIOS[scenario]
    return v[mode] if isinstance(v, dict) else v


def run_node(*args: str, timeout: float = 300) -> str:
    with tempfile.TemporaryDirectory(prefix="mcp-gw-node-") as home:
        done = subprocess.run([str(require_node()), str(CONFORMANCE), *args], capture_output=True,
                              timeout=timeout, cwd=home, env=node_env(Path(home)), stdin=subprocess.DEVNULL)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def listed() -> list[str]:
    out = run_node("list", "--server", timeout=60)
    names = re.findall(r"^\s+- (\S+) \[", out, re.M)
    assert names, out[-3000:]
    return names


TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@pytest.fixture(scope="module", params=MODES)
def results(request, tmp_path_factory) -> tuple[str, dict[str, list[dict]]]:
    """One run of every server scenario (`--suite all`) against a fresh gateway: checks by scenario."""
    mode = request.param
    require_node()
    directory = tmp_path_factory.mktemp(f"conformance-{mode}")
    directory.chmod(0o755)
    out_dir = directory / "results"
    with HttpGateway(http_config(directory, http={"stateless": mode == "stateless"})) as gw:
        out = run_node("server", "--url", gw.url, "--suite", "all", "-o", str(out_dir))
    checks: dict[str, list[dict]] = {}
    for path in sorted(out_dir.glob("server-*/checks.json")):
        checks[TIMESTAMP.sub("", path.parent.name)[len("server-"):]] = json.loads(path.read_text())
    assert checks, out[-4000:]
    return mode, checks


def test_installed_suite_is_the_pinned_one():
    require_node()
    pinned = json.loads((REPO / "scripts" / "node" / "package.json").read_text())["dependencies"]
    assert package_version("@modelcontextprotocol/conformance") == pinned["@modelcontextprotocol/conformance"]
    assert pinned["@modelcontextprotocol/conformance"] in DOC.read_text()


def test_every_listed_scenario_has_a_verdict(listed):
    assert sorted(set(listed) - set(SCENARIOS)) == [], "new scenarios: give each a verdict (and a docs row)"
    assert sorted(set(SCENARIOS) - set(listed)) == [], "verdicts for scenarios the suite no longer has"


def test_every_scenario_ran(results, listed):
    mode, checks = results
    assert sorted(set(listed) - set(checks)) == [], f"{mode}: scenarios without results"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario(results, scenario):
    mode, all_checks = results
    checks = all_checks[scenario]
    v = verdict(scenario, mode)
    bad_wire = [c for c in checks if c["id"] == "wire-schema-valid" and c["status"] == "FAILURE"]
    assert not bad_wire, f"{mode} {scenario}: the gateway sent a message that breaks the spec's schema: {bad_wire}"
    if v.kind == "pass":
        ids = {c["id"] for c in checks}
        assert set(v.na_checks) <= ids, f"{mode} {scenario}: stale na_checks {set(v.na_checks) - ids}"
        failed = [c for c in checks if c["status"] == "FAILURE" and c["id"] not in v.na_checks]
        assert not failed, f"{mode} {scenario}: {json.dumps(failed, indent=1)[:4000]}"
        assert any(c["status"] == "SUCCESS" and c["id"] != "wire-schema-valid" for c in checks), \
            f"{mode} {scenario}: nothing was checked: {checks}"
    elif v.kind == "vacuous":
        text = json.dumps(checks)
        assert "POLICY_DENIED: unknown tool" in text, \
            f"{mode} {scenario}: no longer passes on the unknown-tool refusal alone: reclassify it"


def doc_rows() -> dict[str, tuple[str, str]]:
    text = DOC.read_text()
    start = text.index("<!-- conformance-table -->")
    end = text.index("<!-- /conformance-table -->")
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:end].splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_docs_table_matches_the_verdicts():
    expected = {s: (verdict(s, "stateful").kind, verdict(s, "stateless").kind) for s in SCENARIOS}
    assert doc_rows() == expected
