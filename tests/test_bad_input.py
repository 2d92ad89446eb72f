"""Bad and hostile inputs through the real CLI entry point: exit 2, exactly one stderr line
`l0eval: error: ...`, no traceback, and nothing written to the results folder or the cache.

Every case runs in this process through ``l0eval.cli.main(argv)`` (tests/cli_runs.py: stderr at the
file-descriptor level, printed warnings and log records count as lines), with its own environment,
working folder and Hugging Face cache. A few representative cases (SUBPROCESS_CASES) also run as
``python -m l0eval.cli`` in a fresh process, where the environment is read at import and nothing is
shared with the test process.
Every case is refused before any training or model pass.
"""

import json
import os
from pathlib import Path

import pytest
import yaml
from cli_runs import CliRun, in_a_fresh_process
from hub_fixtures import random_weights

from l0eval.atomic import temp_path

TOY = {"name": "tiny", "kind": "toy",
       "toy": {"n_features": 8, "d_model": 16, "probabilities": {"linear": {"high": 0.5, "low": 0.2}},
               "correlation": {"random": {"seed": 1}}, "embedding": {"steps": 200}},
       "sae": {"d_sae": 8, "k": {"range": [1, 5]}},
       "training": {"samples": 60_000, "batch_size": 256, "lr": 3.0e-3, "seeds": [0]},
       "evaluation": {"samples": 5_000}, "selectors": {"snd_n": [3, 4]}}


def toy(tmp, **changes) -> str:
    """A small toy family file with ``changes`` ("toy.n_features": 9 sets a nested key)."""
    family = json.loads(json.dumps(TOY))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = family
        for parent in parents:
            node = node[parent]
        node[key] = value
    return write(tmp / "family.yaml", yaml.safe_dump(family))


def write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def sae_family(tmp, members: list[dict], **top) -> str:
    return write(tmp / "saes.yaml", yaml.safe_dump({"name": "my-saes", "kind": "saes", "d_in": 4,
                                                    "members": members, **top}))


def local_sae(tmp, cfg_text: str | None = None, d_sae: int = 8, weights_d_sae: int = 8) -> str:
    """A SAELens folder; ``cfg_text`` replaces its cfg.json, ``weights_d_sae`` != ``d_sae`` mismatches."""
    from safetensors.torch import save_file

    folder = tmp / "sae"
    folder.mkdir(parents=True)
    save_file(random_weights(4, weights_d_sae), str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": 4, "d_sae": d_sae, "dtype": "float32", "device": "cpu", "architecture": "standard",
           "apply_b_dec_to_input": True, "normalize_activations": "none"}
    write(folder / "cfg.json", cfg_text if cfg_text is not None else json.dumps(cfg))
    return sae_family(tmp, [{"path": str(folder)}])


def cfg_symlink_to_dev_zero(tmp) -> str:
    path = local_sae(tmp)
    (tmp / "sae" / "cfg.json").unlink()
    os.symlink("/dev/zero", tmp / "sae" / "cfg.json")
    return path


def billion_laughs(tmp) -> str:
    """Nine levels of nine aliases: 9^9 strings once expanded, in a 400-byte file."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    return write(tmp / "family.yaml", "\n".join(levels) + "\n" + yaml.safe_dump({**TOY, "description": None})
                 .replace("description: null", "description: *i"))


def llm_dataset_family(tmp) -> str:
    return sae_family(tmp, [], hook="blocks.1.hook_resid_post",
                      activations={"model": "smollm2-135m", "dataset": "nobody/not-cached", "context": 8,
                                   "sequences": 4})


def results_list(tmp) -> str:
    write(tmp / "res" / "fam.json", "[1, 2, 3]")
    return str(tmp / "res")


def results_folder_in_the_way(tmp) -> str:
    """A folder where the results file `tiny.json` would go; returns the folder holding both."""
    (tmp / "tiny.json").mkdir(parents=True)
    toy(tmp)
    (tmp / "family.yaml").rename(tmp / "tiny.yaml")
    return str(tmp)


def a_file(tmp) -> str:
    return write(tmp / "a-file", "x")


def llm_train_family(tmp) -> str:
    return sae_family(tmp, [], width=16, hook="blocks.1.hook_resid_post",
                      activations={"model": "smollm2-135m", "texts": ["corpus.txt"],
                                                      "context": 8, "sequences": 4})


REGISTRY_FAMILY = "saebench-pythia-160m-l8-topk-4k"


def registry_hub(tmp, hidden_size: int = 768) -> str:
    """A hub cache holding everything the registry family's run reads, its model of width ``hidden_size``."""
    from hub_fixtures import registry_family_hub

    from l0eval.family.registry import hub_families

    registry_family_hub(tmp / "hub", hub_families()[REGISTRY_FAMILY], hidden_size)
    return str(tmp / "hub")


def run_registry_family(*changes: str) -> list[str]:
    """`run` of the registry family on the fixture hub, with ``changes`` to its `--activations` (KEY=VALUE)."""
    from hub_fixtures import FIXTURE_OVERRIDES

    changed = {change.split("=")[0] for change in changes}
    kept = [pair for pair in FIXTURE_OVERRIDES if pair.split("=")[0] not in changed]
    return ["run", "--family", REGISTRY_FAMILY, "--metrics", "core,snd", "--quiet", "--activations", *kept, *changes]


# (case id, setup(tmp) -> value used as {x} in argv, argv, extra env, text the error line must contain)
CASES = [
    ("spec-not-utf8", lambda t: write(t / "f.yaml", b"name: caf\xe9\n"), ["run", "--family", "{x}"], {}, "not UTF-8"),
    ("spec-utf16", lambda t: write(t / "f.yaml", yaml.safe_dump(TOY).encode("utf-16")), ["run", "--family", "{x}"],
     {}, "UTF-16"),
    ("spec-duplicate-key", lambda t: write(t / "f.yaml", yaml.safe_dump(TOY) + "name: other\n"),
     ["run", "--family", "{x}"], {}, "appears twice"),
    ("spec-alias-bomb", billion_laughs, ["run", "--family", "{x}"], {}, "aliases expand"),
    ("spec-invalid-yaml", lambda t: write(t / "f.yaml", "name: [unclosed\n"), ["run", "--family", "{x}"], {},
     "not valid YAML"),
    ("name-traversal", lambda t: toy(t, name="../../x"), ["run", "--family", "{x}"], {}, "'../../x'"),
    ("name-300-chars", lambda t: toy(t, name="n" * 300), ["run", "--family", "{x}"], {}, "300 characters"),
    ("name-nul", lambda t: write(t / "f.yaml", yaml.safe_dump(TOY).replace("name: tiny", 'name: "a\\0b"')),
     ["run", "--family", "{x}"], {}, "file name"),
    ("nan-k", lambda t: toy(t, **{"sae.k": [1, float("nan")]}), ["run", "--family", "{x}"], {}, "finite"),
    ("nan-probability", lambda t: toy(t, **{"toy.probabilities": [float("nan")] * 8}),
     ["run", "--family", "{x}"], {}, "finite"),
    ("inf-lr", lambda t: toy(t, **{"training.lr": float("inf")}), ["run", "--family", "{x}"], {}, "finite"),
    ("nan-magnitude", lambda t: toy(t, **{"toy.magnitude": {"mean": float("nan")}}), ["run", "--family", "{x}"],
     {}, "magnitude"),
    ("nan-correlation", lambda t: toy(t, **{"toy.correlation": {"star": {"rho": float("nan")}}}),
     ["run", "--family", "{x}"], {}, "finite"),
    ("nan-canonical-target", lambda t: toy(t, **{"selectors.canonical_target": float("nan")}),
     ["run", "--family", "{x}"], {}, "finite"),
    ("huge-d_sae", lambda t: toy(t, **{"sae.d_sae": 10**9}), ["run", "--family", "{x}"], {}, "memory"),
    ("huge-n_features", lambda t: toy(t, **{"toy.n_features": 10**9}), ["run", "--family", "{x}"], {},
     "n_features"),
    ("huge-d_model", lambda t: toy(t, **{"toy.d_model": 10**9}), ["run", "--family", "{x}"], {}, "memory"),
    ("huge-batch", lambda t: toy(t, **{"training.batch_size": 10**9, "training.samples": 10**9}),
     ["run", "--family", "{x}"], {}, "memory"),
    ("huge-evaluation", lambda t: toy(t, **{"evaluation.samples": 10**12}), ["run", "--family", "{x}"], {},
     "memory"),
    ("seeds-1000000", toy, ["run", "--family", "{x}", "--seeds", "1000000"], {}, "--seeds"),
    ("samples-below-batch", toy, ["run", "--family", "{x}", "--samples", "10"], {}, "smaller than one batch"),
    ("device-banana", toy, ["run", "--family", "{x}", "--device", "banana"], {}, "--device 'banana'"),
    ("device-meta", toy, ["run", "--family", "{x}", "--device", "meta"], {}, "--device 'meta'"),
    ("out-is-a-file", a_file, ["run", "--family", "toy", "--out", "{x}"], {}, "is a file"),
    ("out-under-a-file", a_file, ["run", "--family", "toy", "--out", "{x}/sub"], {}, "is a file"),
    ("out-not-writable", lambda t: "/proc/l0eval-out", ["run", "--family", "toy", "--out", "{x}"], {},
     "cannot write"),
    ("cache-is-a-file", a_file, ["run", "--family", "toy"], {"L0EVAL_CACHE": "{x}"}, "is not a folder"),
    ("cache-empty", lambda t: "", ["run", "--family", "toy"], {"L0EVAL_CACHE": ""}, "set but empty"),
    ("torch-threads-bad", toy, ["run", "--family", "{x}"], {"L0EVAL_TORCH_THREADS": "0"}, "L0EVAL_TORCH_THREADS"),
    ("train-batch-size-0", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "--batch-size", "0"], {},
     "--batch-size"),
    ("train-lr-nan", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "--lr", "nan"], {}, "--lr"),
    ("train-lr-negative", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "--lr", "-1"], {}, "--lr"),
    ("train-seed-negative", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "--seed", "-1"], {},
     "--seed"),
    ("train-duplicate-l0", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "4"], {},
     "more than once"),
    ("train-l0-above-width", llm_train_family, ["train", "--family", "{x}", "--l0", "40"], {}, "width"),
    ("train-huge-width", llm_train_family, ["train", "--family", "{x}", "--l0", "4", "--width", str(10**9)], {},
     "memory"),
    ("cfg-json-is-a-list", lambda t: local_sae(t, "[1, 2]"), ["download", "--family", "{x}"], {}, "JSON object"),
    ("cfg-json-dev-zero", cfg_symlink_to_dev_zero, ["download", "--family", "{x}"], {}, "not a regular file"),
    ("cfg-json-garbage", lambda t: local_sae(t, "{not json"), ["download", "--family", "{x}"], {}, "cfg.json"),
    ("weights-shape-mismatch", lambda t: local_sae(t, weights_d_sae=6), ["download", "--family", "{x}"], {},
     "size mismatch for W_dec"),
    ("hub-repo-id-traversal", lambda t: sae_family(t, [{"repo_id": "../../etc", "path": "x"}]),
     ["download", "--family", "{x}"], {}, "invalid hub repo_id"),
    ("hub-path-traversal", lambda t: sae_family(t, [{"repo_id": "org/repo", "path": "../../x"}]),
     ["download", "--family", "{x}"], {}, "inside the repo"),
    ("hub-path-absolute", lambda t: sae_family(t, [{"repo_id": "org/repo", "path": "/etc/x"}]),
     ["download", "--family", "{x}"], {}, "inside the repo"),
    ("hub-member-offline", lambda t: sae_family(t, [{"repo_id": "org/repo", "path": "x"}]),
     ["download", "--family", "{x}"], {}, "HF_HUB_OFFLINE"),
    ("release-member-offline", lambda t: sae_family(t, [{"release": "gemma-scope-2b-pt-res",
                                                         "path": "layer_12/width_16k/average_l0_82"}]),
     ["download", "--family", "{x}"], {}, "not in the Hugging Face cache"),
    ("release-unknown", lambda t: sae_family(t, [{"release": "no-such-release", "path": "x"}]),
     ["download", "--family", "{x}"], {}, "no release"),
    ("dataset-offline-uncached", llm_dataset_family, ["run", "--family", "{x}"], {}, "nobody/not-cached"),
    ("compare-json-list", results_list, ["compare", "--results", "{x}"], {}, "JSON object"),
    ("leaderboard-out-a-file", a_file, ["leaderboard", "--out", "{x}"], {}, "is a file"),
    ("compare-resamples-0", results_list, ["compare", "--results", "{x}", "--resamples", "0"], {}, "--resamples"),
    ("compare-bootstrap-seed-negative", results_list, ["compare", "--results", "{x}", "--bootstrap-seed", "-1"], {},
     "--bootstrap-seed"),
    ("results-file-is-a-folder", results_folder_in_the_way, ["run", "--family", "{x}/tiny.yaml", "--out", "{x}"], {},
     "is a folder"),
    ("families-show-missing", lambda t: "", ["families", "show", "missing.yaml"], {}, "not found"),
    ("profile-unknown-key", lambda t: "", ["run", "--family", REGISTRY_FAMILY, "--activations", "sequencs=64"], {},
     "--activations: unknown key 'sequencs' (did you mean 'sequences'?)"),
    ("profile-override-not-a-pair", lambda t: "", ["run", "--family", REGISTRY_FAMILY, "--activations", "64"], {},
     "KEY=VALUE"),
    ("profile-model-width-mismatch", lambda t: registry_hub(t, hidden_size=32), run_registry_family(),
     {"HF_HUB_CACHE": "{x}"}, "has d_in 768 but fixture-org/tiny-pythia at blocks.8.hook_resid_post gives d_model 32"),
    ("profile-corpus-too-short", registry_hub, run_registry_family("sequences=1000"), {"HF_HUB_CACHE": "{x}"},
     "has fewer than 1000 sequences of 16 tokens"),
]


# cases that also run in a fresh `python -m l0eval.cli` process: the spec reader, an environment variable read
# at start, huggingface_hub's offline mode read at its import, a library error through the top-level guard
SUBPROCESS_CASES = ("spec-not-utf8", "cache-empty", "hub-member-offline", "cfg-json-garbage")
def prepared(tmp_path, setup, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The case's argv and environment with its input made under ``tmp_path/inputs``."""
    value = setup(tmp_path / "inputs")
    argv = [arg.replace("{x}", value) for arg in argv]
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    environment = {"L0EVAL_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                   "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
                   **{key: item.replace("{x}", value) for key, item in env.items()}}
    return argv, environment


def assert_one_line_exit_2_nothing_written(tmp_path, case, run: CliRun, expected) -> None:
    code, lines, shown = run.code, run.lines, run.stderr[-2000:]
    assert code == 2, (case, code, shown)
    assert len(lines) == 1 and lines[0].startswith("l0eval: error: "), (case, shown)
    assert "Traceback" not in lines[0] and "--debug" not in lines[0]
    assert expected in lines[0], (case, lines[0])
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists(), f"{case}: something was written"
    assert not (tmp_path / "hf-cache").exists()


@pytest.mark.parametrize("case, setup, argv, env, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, cli, case, setup, argv, env, expected):
    argv, environment = prepared(tmp_path, setup, argv, env)
    assert_one_line_exit_2_nothing_written(tmp_path, case, cli(argv, environment, cwd=tmp_path), expected)


@pytest.mark.parametrize("case, setup, argv, env, expected", [c for c in CASES if c[0] in SUBPROCESS_CASES],
                         ids=[c[0] for c in CASES if c[0] in SUBPROCESS_CASES])
def test_bad_input_in_a_fresh_process(tmp_path, case, setup, argv, env, expected):
    argv, environment = prepared(tmp_path, setup, argv, env)
    run = in_a_fresh_process(argv, environment, cwd=tmp_path, timeout=240)
    assert_one_line_exit_2_nothing_written(tmp_path, case, run, expected)


def full_disk_at(path: Path) -> None:
    """This process's next write of ``path`` goes to /dev/full, where the kernel answers ENOSPC as on a full disk:
    the atomic writer's temp file for it is made a symbolic link there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/full", temp_path(path))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, cli):
    from test_leaderboard import family_results

    from l0eval.results import write_json

    results, out = tmp_path / "results", tmp_path / "leaderboard"
    write_json(results / "toy-a.json", family_results("toy-a", [2, 4, 8, 16], 8))
    full_disk_at(out / "README.md")  # the first file `leaderboard` writes
    environment = {"L0EVAL_CACHE": str(tmp_path / "cache"), "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    run = cli(["leaderboard", "--results", str(results), "--out", str(out), "--resamples", "5", "--no-screenshots"],
              environment)
    assert (run.code, run.lines) == (2, [f"l0eval: error: cannot write {out / 'README.md'}: No space left on device"])
    assert not list(out.iterdir()), "a file (or the temp file) of the failed write was left"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_saving_a_trained_member_is_one_line_naming_it(tmp_path, cli):
    """A member's weights (written once training has finished) meet a full disk: one line naming the file,
    no family marked complete and no results; the same run with room to write then finishes."""
    from l0eval.family.toy_family import toy_members
    from l0eval.family.toy_spec import load_family_file
    from l0eval.saes.store import COMPLETE_MARKER

    family = toy(tmp_path, **{"training.samples": 2_560})
    spec = load_family_file(family)
    cache, out = tmp_path / "cache", tmp_path / "out"
    folder = cache / "families" / f"{spec.name}-{spec.fingerprint()}" / "members" / toy_members(spec)[0].id
    weights = folder / "sae_weights.safetensors"
    full_disk_at(weights)
    argv = ["run", "--family", family, "--out", str(out), "--quiet"]
    run = cli(argv, {"L0EVAL_CACHE": str(cache)})
    assert (run.code, run.lines) == (2, [f"l0eval: error: cannot write {weights}: No space left on device"])
    assert not list(cache.rglob(COMPLETE_MARKER)) and not out.exists()
    assert not weights.exists() and not os.path.lexists(temp_path(weights))
    assert cli(argv, {"L0EVAL_CACHE": str(cache)}).code == 0
