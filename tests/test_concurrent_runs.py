"""Two runs of the same family on one cache: the family's lock makes one wait (saying so) while the
other trains; the second then reuses the trained SAEs, so the work is done once and both agree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from same_results import assert_same_results
from test_kill_during_write import FAMILY

from l0eval.family.catalog import resolve
from l0eval.saes import store

REPO = Path(__file__).parent.parent


@pytest.mark.slow  # two CLI processes, one trains a toy family
def test_a_second_run_of_the_same_family_waits_and_reuses_the_first_ones_saes(tmp_path, monkeypatch):
    family = tmp_path / "tiny-kill.yaml"
    family.write_text(yaml.safe_dump(FAMILY))
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "cache"))
    spec = resolve(str(family)).members.spec  # the toy spec its trained members come from
    lock = FileLock(f"{store.family_dir(spec.name, spec.fingerprint())}.lock")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = []
    with lock:  # held here until both runs have said they wait, so both must wait: no timing involved
        for name in ("a", "b"):
            runs.append(subprocess.Popen([sys.executable, "-m", "l0eval.cli", "run", "--family", str(family),
                                          "--out", str(tmp_path / name), "--quiet"], env=env, text=True,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for run in runs:
            line = run.stderr.readline()
            assert "another l0eval run is working on family 'tiny-kill'" in line and "waiting" in line, line
    for run in runs:
        assert run.wait(timeout=600) == 0, run.stderr.read()[-2000:]
    a, b = (json.loads((tmp_path / name / "tiny-kill.json").read_text()) for name in ("a", "b"))
    assert sorted([a["run"]["training"]["reused_cache"], b["run"]["training"]["reused_cache"]]) == [False, True]
    for payload in (a, b):
        payload["run"]["training"] = {key: value for key, value in payload["run"]["training"].items()
                                      if key not in ("reused_cache", "resumed_from_step")}
    assert_same_results(a, b)
