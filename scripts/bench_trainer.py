"""Benchmark: the batched family trainer vs sae-lens's own trainer, one SAE after another.

Same machine, same run, same family (the paper's main toy, k = 1..25), same samples per SAE and the
same data generator. Writes results/bench/trainer.json.

    python scripts/bench_trainer.py [--samples 1200000] [--device cpu]

The default budget passes the dead-latent window (1000 steps), so both trainers also run their
aux-loss path.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

from l0eval.activations.toy.model import ToyBatchSource, ToyModel
from l0eval.family.toy_spec import toy_spec_by_name
from l0eval.results import device_description, library_versions, now, write_json
from l0eval.train.batched import FamilyTrainer, TrainerConfig, batchtopk_sae, member_seed, sae_lens_init


def batched(spec, model, samples: int, device: str) -> float:
    k_values = list(spec.sae.k_values)
    inits = [sae_lens_init(spec.toy.d_model, spec.sae.d_sae, member_seed(0, k)) for k in k_values]
    source = ToyBatchSource([(model.sampler(), 0)])
    cfg = TrainerConfig(d_in=spec.toy.d_model, d_sae=spec.sae.d_sae, samples=samples,
                        batch_size=spec.training.batch_size, lr=spec.training.lr)
    started = time.perf_counter()
    FamilyTrainer(cfg, inits, k_values, source, device=device).fit(progress=False)
    return time.perf_counter() - started


def one_by_one_with_sae_lens(spec, model, samples: int, device: str) -> float:
    started = time.perf_counter()
    for k in spec.sae.k_values:
        source = ToyBatchSource([(model.sampler(), 0)])
        sae = batchtopk_sae(sae_lens_init(spec.toy.d_model, spec.sae.d_sae, member_seed(0, k)), k)
        sae.train()
        cfg = SAETrainerConfig(total_training_samples=samples, train_batch_size_samples=spec.training.batch_size,
                               lr=spec.training.lr, lr_end=spec.training.lr, device=device,
                               logger=LoggingConfig(log_to_wandb=False))
        batches = iter(lambda: source.next_batch(spec.training.batch_size).to(device), None)
        SAETrainer(cfg=cfg, sae=sae.to(device), data_provider=batches).fit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_200_000, help="training samples per SAE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/bench/trainer.json")
    args = parser.parse_args()

    spec = toy_spec_by_name("toy")
    model = ToyModel(spec.toy)
    model.embedding  # built once, outside both timings
    batched(spec, model, spec.training.batch_size * 20, args.device)  # warm-up (allocator, threads)
    batched_seconds = batched(spec, model, args.samples, args.device)
    sae_lens_seconds = one_by_one_with_sae_lens(spec, model, args.samples, args.device)
    n_saes = len(spec.sae.k_values)
    steps = args.samples // spec.training.batch_size
    total_samples = n_saes * steps * spec.training.batch_size
    payload = {
        "benchmark": "batched family trainer vs sae-lens SAETrainer one SAE at a time",
        "date": now(),
        "device": args.device,
        "device_name": device_description(args.device),
        "library_versions": library_versions(),
        "family": {"name": spec.name, "k_values": list(spec.sae.k_values), "d_in": spec.toy.d_model,
                   "d_sae": spec.sae.d_sae, "batch_size": spec.training.batch_size},
        "samples_per_sae": args.samples,
        "batched_seconds": batched_seconds,
        "sae_lens_one_by_one_seconds": sae_lens_seconds,
        "speedup": sae_lens_seconds / batched_seconds,
        "batched_sae_samples_per_second": total_samples / batched_seconds,
        "sae_lens_sae_samples_per_second": total_samples / sae_lens_seconds,
        "batched_ms_per_sae_step": 1000 * batched_seconds / (n_saes * steps),
        "sae_lens_ms_per_sae_step": 1000 * sae_lens_seconds / (n_saes * steps),
    }
    path = write_json(Path(args.out), payload)
    print(f"{n_saes} SAEs x {args.samples:,} samples: batched {batched_seconds:.1f}s, "
          f"sae-lens one by one {sae_lens_seconds:.1f}s -> {payload['speedup']:.1f}x  ({path})")


if __name__ == "__main__":
    main()
