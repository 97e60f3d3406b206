"""docs/CONFIG.md's key reference is generated from the pydantic models and must not drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
REGENERATE = ".venv/bin/python scripts/gen_config_doc.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_doc", REPO / "scripts" / "gen_config_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_is_up_to_date():
    gen = _generator()
    committed = gen.current_section((REPO / "docs" / "CONFIG.md").read_text(encoding="utf-8"))
    assert committed == gen.generate(), (
        f"docs/CONFIG.md is out of date with mcp_gateway/config.py: run `{REGENERATE}` and commit the result")


def test_every_key_of_the_models_is_documented():
    from mcp_gateway.config import GatewayConfig

    gen = _generator()
    text = gen.current_section((REPO / "docs" / "CONFIG.md").read_text(encoding="utf-8"))

    def keys(model, seen=()):
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            yield info.alias or name
            nested = gen.nested_model(info.annotation)
            if nested and nested[1] not in seen:
                yield from keys(nested[1], (*seen, nested[1]))

    for key in set(keys(GatewayConfig)):
        assert f"| `{key}` |" in text, f"{key} is missing from docs/CONFIG.md: run `{REGENERATE}`"


def test_generator_describes_every_key():
    gen = _generator()
    gen.generate()
    assert gen._missing == [], (
        f"config keys without a description: {gen._missing}; add Field(description=...) in config.py "
        f"or an entry in scripts/gen_config_doc.py DESCRIPTIONS, then run `{REGENERATE}`")
