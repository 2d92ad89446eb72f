"""The results envelope: its committed JSON Schema is the one the code declares, and every committed
family result conforms to it."""

import json
from pathlib import Path

import jsonschema
import pydantic
import pytest

from l0eval.results import SCHEMA_VERSION, build_results, results_json_schema

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted((ROOT / "results").glob("*.json"))  # results/bench/ holds benchmarks, not families


def test_committed_schema_is_generated_from_the_code():
    committed = json.loads((ROOT / "docs" / "results.schema.json").read_text())
    assert committed == results_json_schema(), "run python scripts/results_schema.py"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_results_conform_to_the_schema(path):
    payload = json.loads(path.read_text())
    assert payload["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(payload, results_json_schema())


def _sections() -> dict:
    payload = json.loads((ROOT / "results" / "toy-small.json").read_text())
    payload.pop("schema_version")
    return payload


def test_build_results_keeps_values_and_key_order():
    sections = _sections()
    built = build_results(**sections)
    assert list(built) == ["schema_version", *sections] and built["saes"] == sections["saes"]


@pytest.mark.parametrize("change", [{"surprise": {}}, {"saes": [{"id": "a"}]}, {"ground_truth": {"l0": 1}}],
                         ids=["undeclared section", "incomplete sae entry", "undeclared ground-truth key"])
def test_build_results_rejects_what_the_schema_does_not_declare(change):
    sections = {**_sections(), **change}
    with pytest.raises(pydantic.ValidationError):
        build_results(**sections)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": SCHEMA_VERSION, **sections}, results_json_schema())
