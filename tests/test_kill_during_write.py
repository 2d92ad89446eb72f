"""A run killed in the middle of writing one of its files (the family's complete.json marker, the
trained-members list, the results file), then run again, ends exactly as an uninterrupted run; a
marker or member list damaged anyway is reported and repaired.

The kill is real: ``$L0EVAL_KILL_DURING_WRITE=<file name>`` makes l0eval's atomic writer leave half
of that file's temp copy on disk and ``os._exit(137)`` as SIGKILL would, in a CLI subprocess. The
runs nothing kills are made in this process (tests/cli_runs.py).
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from cli_runs import CliRun, in_a_fresh_process
from same_results import assert_same_results
from test_activations import llm_family
from test_bad_input import TOY

from l0eval.atomic import KILL_ENV, KILLED_EXIT_CODE
from l0eval.cli import main

PROVENANCE = ("reused_cache", "resumed_from_step")  # how the SAEs were obtained: differs after a kill, by design
FAMILY = {**TOY, "name": "tiny-kill", "sae": {"d_sae": 8, "k": {"range": [1, 4]}},
          "training": {**TOY["training"], "samples": 20_000}, "evaluation": {"samples": 2_000}}


def killed(*args, cache: Path, kill_at: str) -> CliRun:
    """The CLI in a subprocess that dies in the middle of writing the file named ``kill_at``."""
    return in_a_fresh_process(list(args), {"L0EVAL_CACHE": str(cache), KILL_ENV: kill_at}, timeout=600)


def results(path: Path) -> dict:
    payload = json.loads(path.read_text())
    for key in PROVENANCE:
        payload["run"]["training"].pop(key, None)
    return payload


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The family file, the results of one run that nothing interrupted, and the cache it left."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    family = folder / "tiny-kill.yaml"
    family.write_text(yaml.safe_dump(FAMILY))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("L0EVAL_CACHE", str(folder / "cache"))
        assert main(["run", "--family", str(family), "--out", str(folder / "out"), "--quiet"]) == 0
    return family, results(folder / "out" / "tiny-kill.json"), folder / "cache"


@pytest.mark.slow  # a CLI process killed mid-write, then a rerun
@pytest.mark.parametrize("kill_at", ["complete.json", "tiny-kill.json"])
def test_a_run_killed_while_writing_reruns_to_the_uninterrupted_results(tmp_path, cli, uninterrupted, kill_at):
    family, expected, _ = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = ["run", "--family", str(family), "--out", str(out), "--quiet"]
    dead = killed(*run, cache=cache, kill_at=kill_at)
    assert dead.code == KILLED_EXIT_CODE, dead.stderr[-2000:]
    assert not (out / "tiny-kill.json").exists()
    markers = list(cache.glob("families/*/complete.json"))
    assert len(markers) == (0 if kill_at == "complete.json" else 1)
    again = cli(run, {"L0EVAL_CACHE": str(cache)})
    assert again.code == 0, again.stderr[-2000:]
    assert_same_results(results(out / "tiny-kill.json"), expected, kill_at)
    assert not list(tmp_path.rglob("*.tmp")), "a temp file of the killed write was left behind"


def test_a_damaged_marker_is_reported_and_the_family_finished_again(tmp_path, cli, uninterrupted):
    family, expected, finished = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(finished, cache)  # the cache a finished run left
    [marker] = cache.glob("families/*/complete.json")
    marker.write_text("")  # as a full disk left it, before writes were atomic
    again = cli(["run", "--family", str(family), "--out", str(out), "--quiet"], {"L0EVAL_CACHE": str(cache)})
    assert again.code == 0, again.stderr[-2000:]
    assert f"l0eval: warning: {marker} is damaged" in again.stderr
    assert json.loads(marker.read_text())["steps"] > 0
    assert_same_results(results(out / "tiny-kill.json"), expected)


def trained_members(cache: Path) -> list[dict]:
    """The member list with what differs between two runs of the same training taken out."""
    members = json.loads((cache / "trained" / "tiny-llm-family" / "members.json").read_text())
    return [{**{k: v for k, v in m.items() if k not in ("train_seconds", "resumed_from_step", "path")},
             "folder": Path(m["path"]).name} for m in members]  # the parent is keyed by the cache's path


@pytest.mark.slow  # trains SAEs; one CLI process killed mid-write
def test_train_killed_while_writing_the_member_list_reruns_to_the_same_members(tmp_path, cli):
    family = str(llm_family(tmp_path))
    train = ["train", "--family", family, "--width", "64", "--samples", "1024", "--batch-size", "256", "--quiet"]
    clean, cache = tmp_path / "clean", tmp_path / "cache"
    for run_cache in (clean, cache):  # an earlier member, whose record a torn list would lose
        assert cli([*train, "--l0", "2"], {"L0EVAL_CACHE": str(run_cache)}).code == 0
    assert cli([*train, "--l0", "4"], {"L0EVAL_CACHE": str(clean)}).code == 0
    dead = killed(*train, "--l0", "4", cache=cache, kill_at="members.json")
    assert dead.code == KILLED_EXIT_CODE, dead.stderr[-2000:]
    assert [m["nominal_l0"] for m in trained_members(cache)] == [2.0]  # the earlier list, whole
    again = cli([*train, "--l0", "4"], {"L0EVAL_CACHE": str(cache)})
    assert again.code == 0, again.stderr[-2000:]
    assert_same_results({"members": trained_members(cache)}, {"members": trained_members(clean)})

    (cache / "trained" / "tiny-llm-family" / "members.json").write_text("[{\"pa")  # damaged by another tool
    shown = cli(["families", "show", family], {"L0EVAL_CACHE": str(cache)})
    assert shown.code == 0, shown.stderr[-2000:]
    assert "members.json is damaged; rebuilt it from 2 trained member folder(s)" in shown.stderr
    assert_same_results({"members": trained_members(cache)}, {"members": trained_members(clean)})
