"""`l0eval run --executor ray` on a local Ray cluster: same results as the local executor, resume from
per-SAE records, a killed worker retried, a failing unit reported without stopping the rest."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import ray
from same_results import assert_same_results
from test_activations import llm_family
from test_run_toy import tiny_family

from l0eval.activations.llm.models import estimated_model_bytes
from l0eval.cli import main
from l0eval.executors.units import plan_units
from l0eval.family.catalog import resolve


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster (two worker slots) for the whole module: starting Ray takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# the LLM family's downstream metrics (probing, its baselines) on one sae-probes dataset instead of the CPU subset
ONE_PROBE_DATASET = ("--probe-datasets", "119_us_state_TX")


def read(path):
    return json.loads(path.read_text())


def families(tmp_path):
    """Two toy families (trained here) and a tiny-Llama family of three SAEs."""
    toys = [toy_family(tmp_path, f"toy-{seed}", samples=20_000, correlation_seed=seed) for seed in (1, 2)]
    return toys + [str(llm_family(tmp_path))]


def toy_family(tmp_path, name, samples, correlation_seed=1):
    toy = {"n_features": 8, "d_model": 16, "probabilities": {"linear": {"high": 0.5, "low": 0.2}},
           "correlation": {"random": {"seed": correlation_seed}}, "embedding": {"steps": 200}}
    return str(tiny_family(tmp_path, name=name, toy=toy, evaluation={"samples": 2_000},
                           training={"samples": samples, "batch_size": 256, "lr": 3.0e-3, "seeds": [0]}))


def one_sae_per_shard_gb(family_path) -> float:
    """A unit memory budget that fits the tiny model with one SAE, not two."""
    family = resolve(family_path)
    model = estimated_model_bytes(family.activations.model)
    assert model > 0
    return (model + family.members.estimated_bytes(family.member_ids()[:1]) + 64) / 2**30


def run(tmp_path, monkeypatch, cache, out, family_paths, *extra):
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / cache))
    args = ["run", "--out", str(tmp_path / out), *extra]
    for path in family_paths:
        args += ["--family", path]
    return main(args)


@pytest.mark.slow  # a local Ray cluster and the local executor, end to end
def test_ray_gives_the_local_results_and_resumes_from_records(ray_cluster, tmp_path, monkeypatch, capsys):
    paths = families(tmp_path)
    assert run(tmp_path, monkeypatch, "cache-local", "local", paths, "--quiet", *ONE_PROBE_DATASET) == 0
    budget = one_sae_per_shard_gb(paths[2])
    assert run(tmp_path, monkeypatch, "cache-ray", "ray", paths, "--executor", "ray",
               "--unit-memory-gb", str(budget), *ONE_PROBE_DATASET) == 0
    progress = capsys.readouterr().err
    assert "0/13 SAEs already recorded" in progress
    assert all(f"tiny-llm-family[{i}/3] done" in progress for i in (1, 2, 3))  # one SAE per shard
    assert "families 3/3, SAEs 13/13" in progress
    for name in ("toy-1", "toy-2", "tiny-llm-family"):
        local, distributed = tmp_path / "local" / f"{name}.json", tmp_path / "ray" / f"{name}.json"
        assert_same_results(read(distributed), read(local), name)
    units = json.loads((tmp_path / "ray" / "tiny-llm-family.json").read_text())["run"]["executor"]["units"]
    assert sorted(u["unit"] for u in units) == [f"tiny-llm-family[{i}/3]" for i in (1, 2, 3)]

    records = sorted((tmp_path / "cache-ray" / "records").glob("tiny-llm-family-*/t1-*.json"))
    assert len(records) == 1
    records[0].unlink()  # as if the run had stopped before this SAE's shard finished
    assert run(tmp_path, monkeypatch, "cache-ray", "again", paths, "--executor", "ray", *ONE_PROBE_DATASET) == 0
    progress = capsys.readouterr().err
    assert "12/13 SAEs already recorded" in progress
    assert "tiny-llm-family[1/1] done" in progress and "toy-1[" not in progress  # only the missing SAE ran
    for name in ("toy-1", "toy-2", "tiny-llm-family"):
        assert_same_results(read(tmp_path / "again" / f"{name}.json"), read(tmp_path / "local" / f"{name}.json"), name)


@pytest.mark.slow  # a local Ray cluster and the local executor, end to end
def test_a_killed_worker_is_retried_and_the_run_completes(ray_cluster, tmp_path, monkeypatch, capsys):
    slow = toy_family(tmp_path, "toy-slow", samples=150_000)
    quick = families(tmp_path)[0]
    assert run(tmp_path, monkeypatch, "cache-local", "local", [slow, quick], "--quiet") == 0
    exit_code = []
    driver = threading.Thread(target=lambda: exit_code.append(
        run(tmp_path, monkeypatch, "cache-ray", "ray", [slow, quick], "--executor", "ray")))
    driver.start()
    killed = kill_one_running_unit()
    driver.join(timeout=300)
    assert exit_code == [0]
    progress = capsys.readouterr().err
    assert "attempt 1 failed" in progress and "retrying" in progress and "(attempt 2)" in progress
    for name in ("toy-slow", "toy-1"):
        ray_run, local_run = read(tmp_path / "ray" / f"{name}.json"), read(tmp_path / "local" / f"{name}.json")
        # a unit killed after its SAEs were saved (or checkpointed) is retried on them: only that provenance differs
        for provenance in ("reused_cache", "resumed_from_step"):
            ray_run["run"]["training"].pop(provenance, None), local_run["run"]["training"].pop(provenance, None)
        assert_same_results(ray_run, local_run, name)
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE


def kill_one_running_unit(timeout: float = 120, after: float = 1.0) -> int:
    """SIGKILL a Ray worker (a descendant of this test process) once it has run a unit for ``after`` seconds."""
    deadline, first_seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        for process in psutil.Process().children(recursive=True):
            try:
                if process.cmdline()[:1] != ["ray::run_unit"]:
                    first_seen.pop(process.pid, None)
                    continue
            except psutil.Error:
                continue
            if time.monotonic() - first_seen.setdefault(process.pid, time.monotonic()) > after:
                os.kill(process.pid, signal.SIGKILL)
                return process.pid
        time.sleep(0.05)
    raise AssertionError("no Ray worker ran a unit")


@pytest.mark.slow  # a local Ray cluster and the local executor, end to end
def test_a_failing_unit_is_reported_and_the_others_finish(ray_cluster, tmp_path, monkeypatch, capsys):
    import yaml

    paths = families(tmp_path)
    raw = yaml.safe_load(open(paths[2]))
    raw["activations"]["hook"] = "blocks.9.hook_resid_post"  # the tiny model has 4 layers: fails on the worker
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw))
    assert run(tmp_path, monkeypatch, "cache", "out", [paths[0], str(broken)], "--executor", "ray") == 1
    err = capsys.readouterr().err
    assert "l0eval: error: tiny-llm-family[1/1] failed after 1 attempt(s): HookError: " in err  # not retried
    assert "asks for layer 9" in err
    assert (tmp_path / "out" / "toy-1.json").is_file() and not (tmp_path / "out" / "tiny-llm-family.json").exists()


def test_llm_families_are_cut_into_shards_that_fit_the_memory_budget(tmp_path):
    family = resolve(llm_family(tmp_path))
    ids = family.member_ids()
    budget = int(one_sae_per_shard_gb(llm_family(tmp_path)) * 2**30)
    assert [u.member_ids for u in plan_units(family, ids, budget)] == [(i,) for i in ids]
    two = budget + family.members.estimated_bytes(ids[:2]) - family.members.estimated_bytes(ids[:1])
    assert [u.member_ids for u in plan_units(family, ids, two)] == [tuple(ids[:2]), tuple(ids[2:])]
    assert [u.member_ids for u in plan_units(family, ids[1:], 2**40)] == [tuple(ids[1:])]
    assert plan_units(family, [], 2**40) == []
    toy = resolve(families(tmp_path)[0])
    assert [len(u.member_ids) for u in plan_units(toy, ["k1_seed0"], 1)] == [5]  # toys train as one unit


@pytest.mark.slow  # a toy run in a fresh process
def test_the_local_executor_never_imports_ray(tmp_path):
    family = families(tmp_path)[0]
    code = ("import sys; from l0eval.cli import main; "
            f"assert main(['run', '--family', {family!r}, '--out', {str(tmp_path)!r}, '--quiet']) == 0; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    env = {**os.environ, "L0EVAL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_executor_option_errors(tmp_path, capsys):
    family = families(tmp_path)[0]
    assert main(["run", "--family", family, "--family", family]) == 2
    assert "a --family is given twice" in capsys.readouterr().err
    assert main(["run", "--family", family, "--ray-address", "auto"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err
    assert main(["run", "--family", family, "--executor", "ray", "--max-attempts", "0"]) == 2
    assert "--max-attempts must be >= 1, got 0" in capsys.readouterr().err


def test_ray_gives_the_local_results_for_a_synthetic_world_family(ray_cluster, tmp_path, monkeypatch):
    """A SynthSAEBench-world family runs on Ray through its parts (trained on the world, judged against its
    targets) and agrees with the local executor: choices exactly, floats within same_results's tolerance."""
    import yaml
    from test_synthetic import tiny_family as tiny_world_family

    path = tmp_path / "tiny-world.yaml"
    path.write_text(yaml.safe_dump(tiny_world_family()))
    assert run(tmp_path, monkeypatch, "cache-local", "local", [str(path)], "--quiet") == 0
    assert run(tmp_path, monkeypatch, "cache-ray", "ray", [str(path)], "--executor", "ray", "--quiet") == 0
    distributed, local = read(tmp_path / "ray" / "tiny-world.json"), read(tmp_path / "local" / "tiny-world.json")
    assert distributed["run"]["executor"]["name"] == "ray" and distributed["family"]["kind"] == "synthetic"
    assert [t["name"] for t in distributed["ground_truth"]["targets"]] == ["true_l0", "true_l0_top_width",
                                                                         "best_f1", "best_mcc"]
    assert_same_results(distributed, local, "tiny-world")
