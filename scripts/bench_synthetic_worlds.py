"""World-generator speed (SyntheticModel.sample, samples/s) for each SynthSAEBench family, and the training cost
of each committed synthetic family result, into results/bench/synthetic_worlds.json.

CPU worlds are loaded from the world cache (built on first use). The 16k world is not built here (its
orthogonalisation alone is ~55 min on 2 CPU cores): its sampling speed is measured on the same config with
``orthogonalization: null``, which changes the feature directions but none of the sampling work (firing,
correlation, hierarchy, magnitudes, the [B, F] x [F, d] product).

    python scripts/bench_synthetic_worlds.py [--seconds 3] [--out results/bench/synthetic_worlds.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch
from sae_lens.synthetic import SyntheticModel

from l0eval.activations.synthetic import load_world
from l0eval.family.synthetic_family import synthetic_spec_by_name
from l0eval.results import device_description, library_versions, now, read_results, write_json

CPU_WORLDS = ("synthsaebench-1k", "synthsaebench-1k-p0.5", "synthsaebench-1k-deep")
BATCHES = (1024, 4096, 8192)
BATCHES_16K = (1024, 4096)


def samples_per_second(model: SyntheticModel, batch: int, seconds: float) -> float:
    torch.manual_seed(0)
    model.sample(batch)  # warm-up
    started, drawn = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        model.sample(batch)
        drawn += batch
    return drawn / (time.monotonic() - started)


def training_cost(results_dir: Path, name: str) -> dict | None:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        return None
    run = read_results(path)["run"]
    training = run["training"]
    return {"results": str(path), "saes": len(read_results(path)["saes"]), "steps": training["steps"],
            "batch_size": training["batch_size"], "samples_per_sae": training["samples_per_sae"],
            "train_seconds": training.get("train_seconds"),
            "world_sample_seconds": training.get("world_sample_seconds"),
            "wall_seconds": run.get("wall_seconds"), "device_name": run.get("device_name"),
            "reused_cache": training.get("reused_cache")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per batch size")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default="results/bench/synthetic_worlds.json")
    parser.add_argument("--note", default="one run each; load averages (1, 5, 15 min) before and after are below",
                        help="how the machine was used during the run (recorded as is)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    worlds = {}
    for name in CPU_WORLDS:
        model, record = load_world(synthetic_spec_by_name(name).world, progress=False)
        worlds[name] = {"num_features": model.cfg.num_features, "hidden_dim": model.cfg.hidden_dim,
                        "world_sha256": record["world_sha256"], "build_seconds": record["build_seconds"],
                        "samples_per_second": {str(b): samples_per_second(model, b, args.seconds) for b in BATCHES},
                        "training": training_cost(Path(args.results), name)}
    config = dataclasses.replace(synthetic_spec_by_name("synthsaebench-16k").world.config, orthogonalization=None)
    started = time.monotonic()
    unorthogonalised = SyntheticModel(config)
    worlds["synthsaebench-16k"] = {
        "num_features": config.num_features, "hidden_dim": config.hidden_dim,
        "measured_on": "the 16k config with orthogonalization null (same sampling work, not the published world)",
        "build_seconds_without_orthogonalisation": time.monotonic() - started,
        "samples_per_second": {str(b): samples_per_second(unorthogonalised, b, args.seconds) for b in BATCHES_16K},
        "training": None}
    write_json(args.out, {"benchmark": "synthetic_worlds", "finished": now(), "device": device_description("cpu"),
                          "threads": torch.get_num_threads(), "library_versions": library_versions(),
                          "note": args.note, "load_average_before": list(load_before),
                          "load_average_after": list(os.getloadavg()), "worlds": worlds})
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
