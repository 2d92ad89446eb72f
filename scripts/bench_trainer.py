"""Benchmark: the batched family trainer vs sae-lens's own trainer one SAE at a time, and vs the machine.

The default toy family (k = 1..25 x 2 seed replicates = 50 SAEs, two data streams, batch 1024,
d_in 100, d_sae 50) on pre-drawn batches, so that data generation is in neither timing. Each round
times, back to back: a run of stacked steps of ours, the same number of steps of sae-lens's
``SAETrainer`` for a few members one after another, and the machine's own matmul throughput (a
stacked ``bmm`` of the trainer's shapes and a large square matmul). The machine may be shared with
other jobs, so absolute times move between rounds; the JSON reports each figure's median over the
rounds and the medians of the per-round ratios, which move much less. Also a profile of one
stacked step by section (torch.profiler), with the aux loss running.

One torch thread by default (``--threads``): on a machine shared with more runnable jobs than cores, a
second OpenMP thread waits at every parallel op for its partner to be scheduled, which costs sae-lens's
many small ops far more than our few large ones and would inflate the ratio; one thread measures the
work itself.

    python scripts/bench_trainer.py [--rounds 5] [--steps 20] [--threads 1] [--out results/bench/trainer.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from pathlib import Path

import torch
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch.profiler import ProfilerActivity, profile

from l0eval import cpu_memory
from l0eval.activations.toy.model import ToyModel
from l0eval.family.toy_family import toy_members
from l0eval.family.toy_spec import toy_spec_by_name
from l0eval.results import device_description, library_versions, now, write_json
from l0eval.runs.toy import _batch_source, _initial_weights
from l0eval.train.batched import FamilyTrainer, TrainerConfig, batchtopk_sae

SECTIONS = ("encoder", "batch_topk", "decoder", "backward", "aux_loss", "clipping", "adam", "threshold_update",
            "dead_tracking")
MATMULS = ("aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::mm", "aten::addmm")


class Replay:
    """Pre-drawn batches with the BatchSource interface."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches, self.position = batches, 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        self.position += 1
        return self.batches[(self.position - 1) % len(self.batches)]

    def get_state(self) -> torch.Tensor:
        return torch.tensor(self.position)

    def set_state(self, state: torch.Tensor) -> None:
        self.position = int(state)


def step_flops(batch: int, d_in: int, d_sae: int) -> float:
    """Matmul FLOPs of one SAE's training step without the aux loss: the encoder and decoder forward, and
    three backward products (decoder weights, codes, encoder weights), each 2 B d h."""
    return 5 * 2.0 * batch * d_in * d_sae


class Bench:
    def __init__(self, steps: int):
        self.spec = toy_spec_by_name("toy")
        self.model = ToyModel(self.spec.toy)
        self.members = toy_members(self.spec)
        self.inits = [_initial_weights(self.spec, self.model, m) for m in self.members]
        self.k_values = [m.k for m in self.members]
        self.batch = self.spec.training.batch_size
        self.d_in, self.d_sae = self.spec.toy.d_model, self.spec.sae.d_sae
        source = _batch_source(self.spec, self.model, self.members)
        self.batches = [source.next_batch(self.batch) for _ in range(steps)]  # [S, B, d] each
        self.steps = steps
        self.trainer = self._trainer(window=None)
        self._run_ours(self.steps)  # warm-up: allocator, threads, and cut-off guesses as in real training

    def _trainer(self, window: int | None) -> FamilyTrainer:
        cfg = TrainerConfig(d_in=self.d_in, d_sae=self.d_sae, samples=10**9, batch_size=self.batch,
                            lr=self.spec.training.lr, dead_feature_window=window)
        return FamilyTrainer(cfg, self.inits, self.k_values, Replay(self.batches))

    def _run_ours(self, steps: int, trainer: FamilyTrainer | None = None) -> float:
        trainer = trainer or self.trainer
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(trainer.source.next_batch(self.batch))
        return time.perf_counter() - started

    def ours_ms_per_sae_step(self) -> float:
        return 1000 * self._run_ours(self.steps) / (self.steps * len(self.members))

    def sae_lens_ms_per_sae_step(self, member_indices: list[int]) -> float:
        """sae-lens's SAETrainer.fit on the same batches, one member after another."""
        n_streams = self.batches[0].shape[0]
        per_stream = len(self.members) // n_streams
        started = time.perf_counter()
        for index in member_indices:
            stream = index // per_stream
            sae = batchtopk_sae(self.inits[index], self.k_values[index])
            sae.train()
            cfg = SAETrainerConfig(total_training_samples=self.steps * self.batch, train_batch_size_samples=self.batch,
                                   lr=self.spec.training.lr, lr_end=self.spec.training.lr, device="cpu",
                                   logger=LoggingConfig(log_to_wandb=False))
            trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(b[stream] for b in self.batches))
            with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
                trainer.fit()
        return 1000 * (time.perf_counter() - started) / (self.steps * len(member_indices))

    def ceiling_gflops(self) -> dict[str, float]:
        """The machine's own matmul throughput: the trainer's stacked encoder and decoder products, and a
        2048 x 2048 square one."""
        n, b, d, h = len(self.members), self.batch, self.d_in, self.d_sae
        x, w_enc, acts, w_dec = torch.randn(n, b, d), torch.randn(n, d, h), torch.randn(n, b, h), torch.randn(n, h, d)
        square = torch.randn(2048, 2048)
        return {"stacked_bmm_encoder": _gflops(lambda: torch.bmm(x, w_enc), 2.0 * n * b * d * h),
                "stacked_bmm_decoder": _gflops(lambda: torch.bmm(acts, w_dec), 2.0 * n * b * d * h),
                "square_2048": _gflops(lambda: square @ square, 2.0 * 2048**3)}

    def profile(self, steps: int = 5) -> dict:
        """ms per stacked step by section, with a short dead-latent window so that the aux loss runs."""
        trainer = self._trainer(window=5)
        self._run_ours(30, trainer)
        members_with_dead = int(((trainer.steps_since_fired > 5).sum(-1) > 0).sum())
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = self._run_ours(steps, trainer)
        events = prof.key_averages()
        section_ms = {e.key: e.cpu_time_total / 1000 / steps for e in events if e.key in SECTIONS}
        matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / 1000 / steps
        step_ms = 1000 * wall / steps
        overhead_ms = step_ms - sum(section_ms.values())
        return {
            "steps_profiled": steps, "members": len(self.members), "members_with_dead_latents": members_with_dead,
            "step_ms_under_profiler": step_ms,
            "sections_ms_per_step": {name: section_ms.get(name, 0.0) for name in SECTIONS},
            "matmuls_ms_per_step_all_sections": matmul_ms,
            "python_and_glue_ms_per_step": overhead_ms,
            "python_and_glue_ms_per_member": overhead_ms / len(self.members),
            "note": "sections are torch.profiler record_function spans in l0eval/train/batched.py (CPU time "
                    "including their ops); matmuls are the bmm/baddbmm ops' own time summed over all sections; "
                    "python_and_glue is the step's wall time outside the sections",
        }


def _gflops(fn, flops: float, repeats: int = 10) -> float:
    """The best of ``repeats`` timed calls after a warm-up: a ceiling is what the machine can do, so a call
    slowed by the machine's other work (or by a fresh output's page faults) should not lower it."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps per trainer per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every measurement")
    parser.add_argument("--out", default="results/bench/trainer.json")
    parser.add_argument("--note", default="", help="how the machine was used during the run (recorded as is)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu_memory.keep_freed_memory()  # as `l0eval run` and `train` do; sae-lens's trainer runs under it too

    load_before = os.getloadavg()
    bench = Bench(args.steps)
    sample_members = [0, 12, 24]  # k = 1, 13, 25 of the first replicate
    rounds = []
    for _ in range(args.rounds):
        ours = bench.ours_ms_per_sae_step()
        sae_lens = bench.sae_lens_ms_per_sae_step(sample_members)
        ceiling = bench.ceiling_gflops()
        rounds.append({"ours_ms_per_sae_step": ours, "sae_lens_ms_per_sae_step": sae_lens, **ceiling})
        print({key: round(value, 3) for key, value in rounds[-1].items()}, flush=True)
    flops = step_flops(bench.batch, bench.d_in, bench.d_sae)
    for entry in rounds:
        entry["ours_gflops"] = flops / entry["ours_ms_per_sae_step"] / 1e6
        entry["ratio_to_sae_lens"] = entry["sae_lens_ms_per_sae_step"] / entry["ours_ms_per_sae_step"]
        entry["ratio_to_stacked_bmm_ceiling"] = entry["ours_gflops"] / max(entry["stacked_bmm_encoder"],
                                                                           entry["stacked_bmm_decoder"])
        entry["ratio_to_square_matmul"] = entry["ours_gflops"] / entry["square_2048"]
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    payload = {
        "benchmark": "batched family trainer vs sae-lens SAETrainer one SAE at a time, and vs the machine's matmuls",
        "date": now(),
        "device_name": device_description("cpu"),
        "torch_threads": torch.get_num_threads(),
        "machine_note": args.note or "load averages (1, 5, 15 min) before and after are below",
        "reading": "absolute times move with the machine's load; the ratios are taken per round (ours, sae-lens and "
                   "the ceiling back to back) and their medians reported",
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "library_versions": library_versions(),
        "family": {"name": bench.spec.name, "members": len(bench.members), "k_values": sorted(set(bench.k_values)),
                   "seed_replicates": list(bench.spec.training.seeds), "d_in": bench.d_in, "d_sae": bench.d_sae,
                   "batch_size": bench.batch, "lr": bench.spec.training.lr},
        "protocol": {"rounds": args.rounds, "steps_per_trainer_per_round": args.steps,
                     "sae_lens_members_per_round": [bench.members[i].id for i in sample_members],
                     "data": "pre-drawn batches (data generation excluded from both trainers)",
                     "flops_per_sae_step": flops,
                     "flops_note": "5 matmuls of 2 B d_in d_sae (encoder, decoder, and the decoder-weight, code "
                                   "and encoder-weight gradients); the aux loss, when it runs, adds up to 3 more"},
        "median": median,
        "goals": {"ratio_to_sae_lens": 4.0, "ratio_to_stacked_bmm_ceiling": 0.5},
        "rounds": rounds,
        "profile": bench.profile(),
    }
    path = write_json(Path(args.out), payload)
    print(f"ours {median['ours_ms_per_sae_step']:.3f} ms/SAE-step, sae-lens {median['sae_lens_ms_per_sae_step']:.3f}: "
          f"{median['ratio_to_sae_lens']:.1f}x; {median['ratio_to_stacked_bmm_ceiling']:.0%} of the stacked-bmm "
          f"ceiling ({path})")


if __name__ == "__main__":
    main()
