"""Validation declared once: invalid-value tests generated from ``l0eval.family.validation.FIELDS``, for toy
specs, `kind: saes` family files and the shipped hub registry alike."""

import copy
import re
from pathlib import Path

import pytest

from l0eval.errors import SpecError
from l0eval.family.registry import HUB_REGISTRY, parse_registry, parse_sae_family
from l0eval.family.synthetic_spec import parse_synthetic_family
from l0eval.family.toy_spec import parse_family, read_yaml_file
from l0eval.family.validation import FIELDS

TOY_SWEEP = {"name": "t", "kind": "toy",
             "toy": {"n_features": 4, "d_model": 8, "probabilities": {"linear": {"high": 0.5, "low": 0.1}},
                     "correlation": {"random": {"seed": 1, "positive_ratio": 0.5, "strength": [0.3, 0.9],
                                                "sparsity": 0.3}},
                     "magnitude": {"mean": 1.0, "std": 0.1}, "embedding": {"seed": 0, "steps": 10}},
             "sae": {"d_sae": 8, "k": [1, 2]},
             "training": {"samples": 40960, "batch_size": 1024, "lr": 0.001, "seeds": [0], "data_seed": 0,
                          "dead_feature_window": 10, "aux_loss_coefficient": 1.0},
             "evaluation": {"samples": 100, "seed": 1, "n_values": [1, 2]},
             "selectors": {"snd_n": [2], "canonical_target": 100.0}}
TOY_MIXING = {"name": "m", "kind": "toy-mixing",
              "toy": {"n_features": 3, "d_model": 6, "probabilities": [0.5, 0.5, 0.5],
                      "correlation": {"star": {"rho": 0.4, "feature": 0}}},
              "sae": {"d_sae": 3, "k": {"range": [1, 2]}}, "mixing": {"rho": [0.0, 0.4], "feature": 0}}
TOY_CONSTANT = {"name": "c", "kind": "toy", "toy": {"n_features": 3, "d_model": 6, "probabilities": {"constant": 0.3}},
                "sae": {"d_sae": 3, "k": [1]}}
SAES = {"name": "s", "kind": "saes", "d_in": 4, "width": 8, "members": [{"path": "x", "nominal_l0": 2, "seed": 0}],
        "activations": {"model": "m", "hook": "blocks.0.hook_resid_post", "texts": ["a.txt"], "context": 8,
                        "sequences": 4, "batch_sequences": 2, "ce_sequences": 0, "heldout_sequences": 2}}
SYNTHETIC = {"name": "w", "kind": "synthetic", "world": {"hub": "owner/world", "sample_chunk": 512},
             "sae": {"d_sae": 8, "k": [1, 2]}}
REGISTRY = {"families": [{"name": "r", "description": "d", "model": "m", "hook": "blocks.0.hook_resid_post",
                          "layer": 0, "d_in": 4, "width": 8, "architecture": "topk", "source": "dictionary_learning",
                          "repo_id": "o/r", "path": "p/trainer_{i}", "trainers": [0, 1], "nominal_l0": [2, 4]}]}

REGISTRY_GRID = {"families": [{"name": "g", "description": "d", "model": "m", "hook": "h", "d_in": 4, "width": 8,
                               "architecture": "batchtopk", "source": "sae_lens_grid", "repo_id": "o/g",
                               "path": "btk/l0-{l0}/seed-{seed}", "l0": [2, 4], "seeds": [0, 1]}]}

REGISTRY_FOLDERS = {"families": [{"name": "f", "description": "d", "model": "m", "hook": "h", "d_in": 4, "width": 8,
                                  "architecture": "batchtopk", "source": "sae_lens_folders", "repo_id": "o/f",
                                  "folders": [{"l0": 2, "path": "runs/a/k2"}, {"l0": 4, "path": "runs/b/k4"}]}]}


def parse_toy(raw):
    return parse_family(raw)


def parse_saes(raw):
    return parse_sae_family(raw, Path("/tmp/family.yaml"))


def parse_synthetic(raw):
    return parse_synthetic_family(raw)


def parse_hub(raw):
    return parse_registry(raw, Path("registry.yaml"))


BASES = [(TOY_SWEEP, parse_toy), (TOY_MIXING, parse_toy), (TOY_CONSTANT, parse_toy), (SAES, parse_saes),
         (SYNTHETIC, parse_synthetic), (REGISTRY, parse_hub), (REGISTRY_GRID, parse_hub),
         (REGISTRY_FOLDERS, parse_hub)]


def _steps(path: str) -> list:
    """'families[].nominal_l0[]' -> ['families', 0, 'nominal_l0', 0]."""
    steps = []
    for part in path.split("."):
        name, lists = part.split("[")[0], part.count("[]")
        steps += [name] + [0] * lists
    return steps


def _holder(raw, steps):
    """The container that holds the value at ``steps``, or None when this base has no such place."""
    node = raw
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    last = steps[-1]
    if isinstance(node, dict):
        present = last in node
    else:
        present = isinstance(node, list) and isinstance(last, int) and last < len(node)
    return node if present else None


def invalid_cases():
    for path, constraint in FIELDS.items():
        for base, parse in BASES:
            if _holder(base, _steps(path)) is not None:
                break
        else:
            raise AssertionError(f"no test base holds {path}: add it to a base above")
        for value in constraint.invalid_values():
            yield pytest.param(base, parse, path, value, id=f"{path}={value!r}")


@pytest.mark.parametrize(("base", "parse", "path", "value"), list(invalid_cases()))
def test_every_declared_constraint_rejects_its_invalid_values(base, parse, path, value):
    parse(copy.deepcopy(base))  # the base itself is valid
    raw = copy.deepcopy(base)
    steps = _steps(path)
    _holder(raw, steps)[steps[-1]] = value
    concrete = path.replace("[]", "[0]")
    with pytest.raises(SpecError, match=re.escape(f"'{concrete}'")):
        parse(raw)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", " lead", "x" * 101, 5, "-dash"])
@pytest.mark.parametrize(("base", "parse"), [(TOY_SWEEP, parse_toy), (SAES, parse_saes)], ids=["toy", "saes"])
def test_family_names_are_safe_file_names(base, parse, name):
    with pytest.raises(SpecError, match="'name' must be"):
        parse({**copy.deepcopy(base), "name": name})


def test_a_typo_in_the_shipped_registry_is_caught_like_a_user_file_typo():
    raw = read_yaml_file(HUB_REGISTRY)
    assert parse_registry(raw, HUB_REGISTRY)  # the shipped file is valid
    entry = raw["families"][3]
    entry["widht"] = entry.pop("width")
    with pytest.raises(SpecError, match=re.escape(f"{HUB_REGISTRY}: unknown key 'families[3].widht' "
                                                  "(did you mean 'width'?)")):
        parse_registry(raw, HUB_REGISTRY)
    user = copy.deepcopy(SAES)
    user["widht"] = user.pop("width")
    with pytest.raises(SpecError, match=re.escape("unknown key 'widht' (did you mean 'width'?)")):
        parse_saes(user)


def test_a_registry_family_listed_twice_is_an_error():
    raw = copy.deepcopy(REGISTRY)
    raw["families"].append(copy.deepcopy(raw["families"][0]))
    with pytest.raises(SpecError, match="family 'r' is listed twice"):
        parse_hub(raw)
