"""keep_freed_memory: a training step's tensors, freed and allocated again, reuse the process's memory
instead of faulting fresh pages in. Each case trains the default toy family for a few steps in a fresh
process (malloc settings hold for a process's life) and counts its minor page faults."""

import json
import platform
import subprocess
import sys

import pytest

STEPS = 40
TRAINING = """
import hashlib, json, resource
from l0eval import cpu_memory
from l0eval.activations.toy.model import ToyModel
from l0eval.family.toy_family import toy_members
from l0eval.family.toy_spec import toy_spec_by_name
from l0eval.runs.toy import _batch_source, _initial_weights
from l0eval.train.batched import FamilyTrainer, TrainerConfig
applied = cpu_memory.keep_freed_memory() if {keep} else False
spec = toy_spec_by_name("toy")
model, members = ToyModel(spec.toy), toy_members(spec)
batch = spec.training.batch_size
config = TrainerConfig(d_in=spec.toy.d_model, d_sae=spec.sae.d_sae, samples={steps} * batch, batch_size=batch,
                       lr=spec.training.lr, dead_feature_window=5)
trainer = FamilyTrainer(config, [_initial_weights(spec, model, m) for m in members], [m.k for m in members],
                        _batch_source(spec, model, members))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
trained = trainer.fit(progress=False)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
weights = hashlib.sha256(trained.member_state_dict(0)["W_dec"].numpy().tobytes()).hexdigest()
step_pages = len(members) * batch * (spec.toy.d_model + spec.sae.d_sae) * 4 // 4096  # [M, B, d] + [M, B, h]
print(json.dumps({{"applied": applied, "faults": faults, "weights": weights, "step_pages": step_pages}}))
"""


def training(keep: bool) -> dict:
    run = subprocess.run([sys.executable, "-c", TRAINING.format(keep=keep, steps=STEPS)], capture_output=True,
                         text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_training_reuses_freed_memory_and_trains_the_same_weights():
    default, kept = training(False), training(True)
    assert kept["applied"] is True
    # one [M, B, d] residual's and one [M, B, h] code tensor's pages per step, if each step faulted them in afresh:
    # with the settings the steps reuse the same memory. glibc's default refaults most steps, but how many varies
    # from run to run with the address layout (120k to 670k faults over 40 steps on one machine), so it is
    # compared, not bounded
    allocated = STEPS * kept["step_pages"]
    assert kept["faults"] < allocated / 4 and kept["faults"] < default["faults"], (kept, default)
    assert kept["weights"] == default["weights"]
