"""One JSON record per finished SAE, so that a distributed run resumes where it stopped.

Records live under ``$L0EVAL_CACHE/records/<family>-<key>/``, where the key hashes everything that
changes an SAE's numbers (the family's data and settings, the metric versions, the device kind); a
member's file name adds a hash of where its weights come from. Each record holds the member's
``saes`` entry and the rest of its unit's results (the "frame"), so a family's results can be
rebuilt from records alone. Records are written by the driver as each unit finishes.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import l0eval
from l0eval.downstream.suite import DownstreamConfig
from l0eval.executors.units import Unit
from l0eval.family.model import Family
from l0eval.metrics.registry import metric_versions
from l0eval.results import SCHEMA_VERSION, build_results, read_results, write_json
from l0eval.saes import store
from l0eval.safe_names import path_component
from l0eval.selection.sweep import sweep_verdict


def _digest(content: object) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    """A member id as a file name (its record's name also carries a hash of the member)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class FamilyRecords:
    """The records of one family's members for one device kind (``cpu`` or ``cuda``)."""

    def __init__(self, family: Family, device: str, downstream: DownstreamConfig | None = None):
        self.family = family
        self.ids = family.member_ids()
        key = _digest({"family": family.content(), "metric_versions": metric_versions(*family.metric_formulas()),
                       "l0eval": l0eval.__version__, "device": device.split(":")[0],
                       "downstream": repr(downstream)})  # other metrics or options: other records
        self.directory = store.cache_root() / "records" / f"{path_component(family.name)}-{key}"
        self._member_keys = {member_id: _digest(content)
                             for member_id, content in family.members.member_content().items()}

    def path(self, member_id: str) -> Path:
        return self.directory / f"{_safe(member_id)}-{self._member_keys[member_id]}.json"

    def missing(self) -> list[str]:
        return [member_id for member_id in self.ids if not self.path(member_id).is_file()]

    def write(self, unit: Unit, outcome: dict) -> None:
        """One record per SAE of a finished unit."""
        results = outcome["results"]
        frame = {key: value for key, value in results.items() if key != "saes"}
        about = {"unit": unit.name, "run_id": uuid.uuid4().hex, "members": list(unit.member_ids),
                 "seconds": outcome["seconds"], "host": outcome["host"]}
        for entry in results["saes"]:
            write_json(self.path(entry["id"]), {"schema_version": SCHEMA_VERSION, "family": self.family.name,
                                                "member": entry["id"], "unit": about, "keys": list(results),
                                                "entry": entry, "frame": frame})

    def assemble(self) -> dict:
        """The family's results from its records: what ``l0eval run`` writes locally, but for the timing
        and host fields (``run.wall_seconds`` is the units' compute time; ``run.executor`` lists them)."""
        records = [read_results(self.path(member_id)) for member_id in self.ids]
        first = records[0]
        if first["unit"]["members"] == self.ids and len({r["unit"]["run_id"] for r in records}) == 1:
            results = {key: first["frame"][key] if key != "saes" else [r["entry"] for r in records]
                       for key in first["keys"]}
        else:
            results = _merge_shards(records)
        results = build_results(**{key: value for key, value in results.items() if key != "schema_version"})
        units = list({r["unit"]["run_id"]: r["unit"] for r in records}.values())
        results["run"]["wall_seconds"] = sum(unit["seconds"] for unit in units)
        results["run"]["executor"] = {"name": "ray", "units": [{key: unit[key] for key in ("unit", "host", "seconds")}
                                                               for unit in units]}
        return results


def _merge_shards(records: list[dict]) -> dict:
    """An LLM family run as several shards: the per-SAE entries side by side, and the family-level
    fields (members, per-L0 table, selectors) recomputed over all of them, as ``l0eval.runs.streamed`` does."""
    frame = records[0]["frame"]
    entries = [record["entry"] for record in records]
    members = [next(m for m in record["frame"]["family"]["members"] if m["id"] == record["member"])
               for record in records]
    table, selectors = sweep_verdict(entries, frame["family"]["selectors"]["snd_n"],
                                     frame["run"]["evaluation"].get("width"), bool(frame["selectors"]))
    merged = {**frame, "family": {**frame["family"], "members": members}, "saes": entries,
              "by_l0": table.to_dict(orient="records"), "selectors": selectors}
    return {key: merged[key] for key in records[0]["keys"]}


# the fields that differ between two runs of the same work: clocks, cache folders, host and thread count
TIMING_AND_HOST = frozenset({"started", "finished", "wall_seconds", "train_seconds", "trained_at", "cache_dir",
                             "device_name", "executor", "build_seconds", "world_sample_seconds"})


def without_timing_and_host(value):
    """Results with the timing and host fields dropped, at any depth: what two executors must agree on."""
    if isinstance(value, dict):
        return {key: without_timing_and_host(item) for key, item in value.items() if key not in TIMING_AND_HOST}
    if isinstance(value, list):
        return [without_timing_and_host(item) for item in value]
    return value
