"""A run killed in the middle of writing one of its files (the family's complete.json marker, the
trained-members list, the results file), then run again, ends exactly as an uninterrupted run; a
marker or member list damaged anyway is reported and repaired.

The kill is real: ``$L0EVAL_KILL_DURING_WRITE=<file name>`` makes l0eval's atomic writer leave half
of that file's temp copy on disk and ``os._exit(137)`` as SIGKILL would, in a CLI subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from same_results import assert_same_results
from test_activations import llm_family
from test_bad_input import TOY

from l0eval.atomic import KILL_ENV, KILLED_EXIT_CODE

REPO = Path(__file__).parent.parent
PROVENANCE = ("reused_cache", "resumed_from_step")  # how the SAEs were obtained: differs after a kill, by design
FAMILY = {**TOY, "name": "tiny-kill", "sae": {"d_sae": 8, "k": {"range": [1, 4]}},
          "training": {**TOY["training"], "samples": 20_000}, "evaluation": {"samples": 2_000}}


def cli(*args, cache: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "L0EVAL_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "l0eval.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def results(path: Path) -> dict:
    payload = json.loads(path.read_text())
    for key in PROVENANCE:
        payload["run"]["training"].pop(key, None)
    return payload


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The family file and the results of one run that nothing interrupted."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    family = folder / "tiny-kill.yaml"
    family.write_text(yaml.safe_dump(FAMILY))
    done = cli("run", "--family", str(family), "--out", str(folder / "out"), "--quiet", cache=folder / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    return family, results(folder / "out" / "tiny-kill.json")


@pytest.mark.parametrize("kill_at", ["complete.json", "tiny-kill.json"])
def test_a_run_killed_while_writing_reruns_to_the_uninterrupted_results(tmp_path, uninterrupted, kill_at):
    family, expected = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    killed = cli("run", "--family", str(family), "--out", str(out), "--quiet", cache=cache, kill_at=kill_at)
    assert killed.returncode == KILLED_EXIT_CODE, killed.stderr[-2000:]
    assert not (out / "tiny-kill.json").exists()
    markers = list(cache.glob("families/*/complete.json"))
    assert len(markers) == (0 if kill_at == "complete.json" else 1)
    again = cli("run", "--family", str(family), "--out", str(out), "--quiet", cache=cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_results(results(out / "tiny-kill.json"), expected, kill_at)
    assert not list(tmp_path.rglob("*.tmp")), "a temp file of the killed write was left behind"


def test_a_damaged_marker_is_reported_and_the_family_finished_again(tmp_path, uninterrupted):
    family, expected = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli("run", "--family", str(family), "--out", str(out), "--quiet", cache=cache).returncode == 0
    [marker] = cache.glob("families/*/complete.json")
    marker.write_text("")  # as a full disk left it, before writes were atomic
    again = cli("run", "--family", str(family), "--out", str(out), "--quiet", cache=cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"l0eval: warning: {marker} is damaged" in again.stderr
    assert json.loads(marker.read_text())["steps"] > 0
    assert_same_results(results(out / "tiny-kill.json"), expected)


def trained_members(cache: Path) -> list[dict]:
    """The member list with what differs between two runs of the same training taken out."""
    members = json.loads((cache / "trained" / "tiny-llm-family" / "members.json").read_text())
    return [{**{k: v for k, v in m.items() if k not in ("train_seconds", "resumed_from_step", "path")},
             "folder": Path(m["path"]).name} for m in members]  # the parent is keyed by the cache's path


def test_train_killed_while_writing_the_member_list_reruns_to_the_same_members(tmp_path):
    family = str(llm_family(tmp_path))
    train = ["train", "--family", family, "--width", "64", "--samples", "1024", "--batch-size", "256", "--quiet"]
    clean, cache = tmp_path / "clean", tmp_path / "cache"
    for run_cache in (clean, cache):  # an earlier member, whose record a torn list would lose
        assert cli(*train, "--l0", "2", cache=run_cache).returncode == 0
    assert cli(*train, "--l0", "4", cache=clean).returncode == 0
    killed = cli(*train, "--l0", "4", cache=cache, kill_at="members.json")
    assert killed.returncode == KILLED_EXIT_CODE, killed.stderr[-2000:]
    assert [m["nominal_l0"] for m in trained_members(cache)] == [2.0]  # the earlier list, whole
    again = cli(*train, "--l0", "4", cache=cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_results({"members": trained_members(cache)}, {"members": trained_members(clean)})

    (cache / "trained" / "tiny-llm-family" / "members.json").write_text("[{\"pa")  # damaged by another tool
    shown = cli("families", "show", family, cache=cache)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "members.json is damaged; rebuilt it from 2 trained member folder(s)" in shown.stderr
    assert_same_results({"members": trained_members(cache)}, {"members": trained_members(clean)})
