"""Demo: kill `l0eval run` (SIGKILL) halfway through its activation pass, run it again, and check that
finished shards are not recomputed and that the results equal those of an uninterrupted run.

Real run: SmolLM2-135M (offline) and the SAEs trained for the `smollm2-l0` family (run
scripts/smollm2_family.py first), on a reduced corpus so the demo takes minutes. Each run gets a fresh
activation cache; the converted model folder is shared so no run pays the one-time GGUF conversion.
Writes results/bench/demo_resume.json.

    python scripts/demo_resume.py [--sequences 256]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from l0eval.activations.llm.activation_cache import CacheKey
from l0eval.family.catalog import resolve
from l0eval.results import now, write_json
from l0eval.saes import store

REPO = Path(__file__).resolve().parent.parent


def demo_family(folder: Path, sequences: int) -> Path:
    """The smollm2-l0 family with its trained SAEs listed as local members and a shorter corpus."""
    family = resolve("smollm2-l0")
    if not family.members.saes:
        sys.exit("the smollm2-l0 family has no trained SAEs yet: run scripts/smollm2_family.py first")
    raw = yaml.safe_load((REPO / "l0eval" / "family" / "builtin" / "smollm2-l0.yaml").read_text())
    raw["name"] = "smollm2-l0-resume-demo"
    raw["members"] = [{"id": m.id, "path": m.path, "nominal_l0": m.nominal_l0} for m in family.members.saes]
    raw["activations"]["sequences"] = sequences
    raw["activations"]["ce_sequences"] = 8  # CE/KL is compared too, on fewer sequences to keep the demo short
    path = folder / "family.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def fresh_cache(cache_root: Path, models: Path) -> Path:
    cache_root.mkdir(parents=True)
    (cache_root / "models").symlink_to(models, target_is_directory=True)
    return cache_root


def start_run(family: Path, out: Path, cache_root: Path) -> subprocess.Popen:
    env = {**os.environ, "L0EVAL_CACHE": str(cache_root)}
    return subprocess.Popen([sys.executable, "-m", "l0eval.cli", "run", "--family", str(family), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def manifest(cache_root: Path) -> dict | None:
    found = list((cache_root / "activations").glob("*/manifest.json"))
    return json.loads(found[0].read_text()) if found else None


def shard_files(cache_root: Path) -> dict[str, Path]:
    return {path.name: path for path in (cache_root / "activations").glob("*/shard_*.npy")}


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate()
    if process.returncode != 0:
        sys.exit(f"l0eval run failed:\n{stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--out", default="results/bench/demo_resume.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        family = demo_family(tmp, args.sequences)
        models = store.cache_root() / "models"
        started = time.monotonic()
        finish(start_run(family, tmp / "clean-out", fresh_cache(tmp / "clean", models)))
        clean_seconds = time.monotonic() - started

        killed = start_run(family, tmp / "resumed-out", fresh_cache(tmp / "resumed", models))
        total = None
        while killed.poll() is None:
            state = manifest(tmp / "resumed")
            total = total or (state and CacheKey(**state["key"]).n_shards)
            if state and len(state["shards"]) >= total // 2:
                killed.send_signal(signal.SIGKILL)
                break
            time.sleep(0.2)
        killed.wait()
        done_at_kill = manifest(tmp / "resumed")["shards"]
        written = {name: path.stat().st_mtime_ns for name, path in shard_files(tmp / "resumed").items()}
        finish(start_run(family, tmp / "resumed-out", tmp / "resumed"))  # the same command again
        after = shard_files(tmp / "resumed")
        rewritten = [name for name in done_at_kill if after[name].stat().st_mtime_ns != written[name]]
        clean_shards = shard_files(tmp / "clean")
        identical_shards = sorted(clean_shards) == sorted(after) and all(
            clean_shards[name].read_bytes() == after[name].read_bytes() for name in clean_shards)
        clean = json.loads((tmp / "clean-out" / "smollm2-l0-resume-demo.json").read_text())
        resumed = json.loads((tmp / "resumed-out" / "smollm2-l0-resume-demo.json").read_text())
        identical_metrics = [e["metrics"] for e in clean["saes"]] == [e["metrics"] for e in resumed["saes"]]
        identical_selectors = clean["selectors"] == resumed["selectors"]
    payload = {"demo": "SIGKILL `l0eval run` halfway through the activation pass, then run it again",
               "date": now(), "family": "smollm2-l0 trained SAEs", "sequences": args.sequences,
               "shards_total": total, "shards_finished_when_killed": len(done_at_kill),
               "killed_exit_signal": -killed.returncode, "finished_shards_rewritten_on_resume": len(rewritten),
               "shards_computed_on_resume": total - len(done_at_kill),
               "shards_byte_identical_to_uninterrupted_run": identical_shards,
               "metrics_identical_to_uninterrupted_run": identical_metrics,
               "selectors_identical_to_uninterrupted_run": identical_selectors,
               "uninterrupted_run_seconds": clean_seconds, "saes": len(clean["saes"])}
    path = write_json(REPO / args.out, payload)
    print(json.dumps(payload, indent=2))
    print(f"written to {path}")
    if rewritten or not (identical_shards and identical_metrics and identical_selectors):
        sys.exit("the resumed run differs from the uninterrupted one")


if __name__ == "__main__":
    main()
