"""The `l0eval` command answers like its neighbours: --version, help on every option, no silent overwrite of
a committed results file, every family checked before any starts, and `families` saying what a run needs."""

import subprocess

import pytest

from l0eval import __version__
from l0eval.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"l0eval {__version__}"


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    undocumented = [f"{name} {action.option_strings or action.dest}" for name, command in commands.items()
                    for action in command._actions if not action.help]
    assert not undocumented


def committed_results(tmp_path, name: str):
    """A git checkout with results/<name>.json committed, as a clone of l0eval has."""
    out = tmp_path / "results"
    out.mkdir()
    (out / f"{name}.json").write_text('{"schema_version": 1}\n')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "results"], check=True)
    return out


def test_run_refuses_to_replace_a_committed_results_file(tmp_path, capsys):
    out = committed_results(tmp_path, "toy")
    assert main(["run", "--family", "toy", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("l0eval: error: ") and "toy.json is a committed results file" in err and "--force" in err
    assert (out / "toy.json").read_text() == '{"schema_version": 1}\n'


def test_every_family_is_checked_before_the_first_starts(tmp_path, capsys):
    """toy would train for minutes; smollm2-l0 (no members in a fresh cache) is refused before toy starts."""
    out = tmp_path / "out"
    assert main(["run", "--family", "toy", "--family", "smollm2-l0", "--out", str(out), "--quiet"]) == 2
    assert "smollm2-l0: has no members yet (0 members) -> python scripts/smollm2_family.py" in capsys.readouterr().err
    assert not out.exists()


def test_force_skips_only_the_committed_check(tmp_path, capsys):
    out = committed_results(tmp_path, "smollm2-l0")
    assert main(["run", "--family", "smollm2-l0", "--out", str(out), "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has no members yet" in err and "committed" not in err


def test_families_says_what_a_fresh_install_needs(capsys):
    assert main(["families"]) == 0
    printed = capsys.readouterr().out
    assert "needed before `l0eval run`:" in printed
    assert "smollm2-l0: has no members yet (0 members) -> python scripts/smollm2_family.py" in printed
    assert main(["families", "show", "smollm2-l0"]) == 0
    assert "python scripts/smollm2_family.py" in capsys.readouterr().out


def test_a_family_that_cannot_start_is_refused_before_a_toy_starts(tmp_path, capsys):
    """A registry family whose hub files are not cached, offline: `run` names them before training the toy
    given first."""
    out = tmp_path / "out"
    assert main(["run", "--family", "toy", "--family", "gemma-scope-2b-l12-res-16k", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "gemma-scope-2b-l12-res-16k: model google/gemma-2-2b@main" in err
    assert "l0eval download --family gemma-scope-2b-l12-res-16k" in err
    assert not out.exists()
