"""Write docs/results.schema.json, the JSON Schema of a results file, from the models in l0eval/results.py;
with ``--migrate``, also bring results files of an older schema_version up to the current one.

    python scripts/results_schema.py [--migrate results/*.json]

Migrations are mechanical: metric values, selector choices and every other field stay as they are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from l0eval.results import SCHEMA_VERSION, build_results, results_json_schema, write_json

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "results.schema.json"


def schema_text() -> str:
    return json.dumps(results_json_schema(), indent=2) + "\n"


def migrate(path: Path) -> bool:
    """Version 1 -> 2: the envelope became declared and validated; no key changed, so the file is only
    re-validated and stamped. Returns whether the file was rewritten."""
    payload = json.loads(path.read_text())
    version = payload.pop("schema_version", None)
    if version == SCHEMA_VERSION:
        return False
    if version != 1:
        raise SystemExit(f"{path}: schema_version {version!r}: no migration to {SCHEMA_VERSION}")
    write_json(path, build_results(**payload))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrate", nargs="*", default=[], type=Path, help="results files to migrate")
    args = parser.parse_args()
    SCHEMA_PATH.write_text(schema_text())
    print(f"wrote {SCHEMA_PATH}")
    for path in args.migrate:
        print(f"{path}: {'migrated' if migrate(path) else 'already current'}")


if __name__ == "__main__":
    main()
