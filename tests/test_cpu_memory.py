"""keep_freed_memory: a training step's tensors, freed and allocated again, reuse the process's memory
instead of faulting fresh pages in. Each case is one measurement of ``scripts/bench_cpu_memory.py`` (the
default toy family trained for a few steps in a fresh process, where malloc settings hold for the process's
life), counting its minor page faults."""

import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from bench_cpu_memory import in_fresh_process  # noqa: E402  (a script, not a package module)

from l0eval.family.toy_spec import toy_spec_by_name  # noqa: E402

STEPS = 40


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_training_reuses_freed_memory_and_trains_the_same_weights():
    default, kept = in_fresh_process(STEPS, False), in_fresh_process(STEPS, True)
    assert kept["applied"] is True
    # one [M, B, d] residual's and one [M, B, h] code tensor's pages per step, if each step faulted them in afresh:
    # with the settings the steps reuse the same memory. glibc's default refaults most steps, but how many varies
    # from run to run with the address layout (120k to 670k faults over 40 steps on one machine), so it is
    # compared, not bounded
    spec = toy_spec_by_name("toy")
    step_pages = kept["members"] * spec.training.batch_size * (spec.toy.d_model + spec.sae.d_sae) * 4 // 4096
    allocated = STEPS * step_pages
    assert kept["minor_page_faults"] < allocated / 4, (kept, default)
    assert kept["minor_page_faults"] < default["minor_page_faults"], (kept, default)
    assert kept["weights_sha256"] == default["weights_sha256"]
