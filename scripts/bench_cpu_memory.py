"""Benchmark: the default toy family's training with and without ``l0eval.cpu_memory.keep_freed_memory``.

Each setting runs in its own fresh process (malloc settings hold for a process's life): the toy family's
members (l0eval/family/builtin/toy.yaml) train together for ``--steps`` steps on their own data streams,
with a dead-latent window short enough that the aux loss runs. Recorded per setting: ms per step, the
process's minor page faults and kernel CPU seconds during training, and a hash of the trained weights,
which must agree between the two (allocation changes no arithmetic). Writes results/bench/cpu_memory.json.

    python scripts/bench_cpu_memory.py [--steps 400] [--out results/bench/cpu_memory.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def train(steps: int, keep: bool) -> dict:
    """One measurement, in this process."""

    from l0eval import cpu_memory, torch_threads
    from l0eval.activations.toy.model import ToyModel
    from l0eval.family.toy_family import toy_members
    from l0eval.family.toy_spec import toy_spec_by_name
    from l0eval.runs.toy import _batch_source, _initial_weights
    from l0eval.train.batched import FamilyTrainer, TrainerConfig

    threads = torch_threads.pin(torch_threads.chosen())
    applied = cpu_memory.keep_freed_memory() if keep else False
    spec = toy_spec_by_name("toy")
    model, members = ToyModel(spec.toy), toy_members(spec)
    batch = spec.training.batch_size
    config = TrainerConfig(d_in=spec.toy.d_model, d_sae=spec.sae.d_sae, samples=steps * batch, batch_size=batch,
                           lr=spec.training.lr, dead_feature_window=steps // 4)
    trainer = FamilyTrainer(config, [_initial_weights(spec, model, m) for m in members], [m.k for m in members],
                            _batch_source(spec, model, members))
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    trained = trainer.fit(progress=False)
    seconds, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    for index in range(len(members)):
        for name, tensor in sorted(trained.member_state_dict(index).items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"keep_freed_memory": keep, "applied": applied, "torch_threads": threads, "members": len(members),
            "steps": steps, "ms_per_step": 1000 * seconds / steps,
            "minor_page_faults": after.ru_minflt - before.ru_minflt,
            "kernel_cpu_seconds": after.ru_stime - before.ru_stime,
            "user_cpu_seconds": after.ru_utime - before.ru_utime,
            "weights_sha256": digest.hexdigest()}


def in_fresh_process(steps: int, keep: bool) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
           f"from bench_cpu_memory import train; print(json.dumps(train({steps}, {keep})))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", default="results/bench/cpu_memory.json")
    parser.add_argument("--note", default="", help="how the machine was used during the run (recorded as is)")
    args = parser.parse_args()

    from l0eval.results import device_description, library_versions, now, write_json

    load_before = os.getloadavg()
    runs = [in_fresh_process(args.steps, keep) for keep in (False, True, False, True)]  # interleaved: drift shows
    off, on = ([r for r in runs if r["keep_freed_memory"] is keep] for keep in (False, True))
    payload = {
        "benchmark": "default toy family training with and without keep_freed_memory (glibc mallopt)",
        "date": now(), "device_name": device_description("cpu"), "library_versions": library_versions(),
        "machine_note": args.note or "load averages (1, 5, 15 min) before and after are below",
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "runs": runs,
        "speedup": min(r["ms_per_step"] for r in off) / min(r["ms_per_step"] for r in on),
        "identical_weights": len({r["weights_sha256"] for r in runs}) == 1,
    }
    path = write_json(Path(args.out), payload)
    print(f"{payload['speedup']:.2f}x faster with keep_freed_memory; identical weights: "
          f"{payload['identical_weights']} ({path})")


if __name__ == "__main__":
    main()
