"""Run an existing SAE family (hub registry or user YAML) through l0eval's evaluation and selectors.

Until the LLM activation pipeline lands, a family is evaluated on a toy's activations
(``activations: {toy: NAME}`` in a user family file), which is how SAEs trained on a toy elsewhere,
or converted into SAELens folders, are scored against that toy's true L0.
"""

from __future__ import annotations

import sys

from l0eval.errors import L0EvalError
from l0eval.evaluate import METRIC_VERSIONS
from l0eval.hub.loaders import load_family
from l0eval.hub.registry import SAEFamily
from l0eval.results import now, run_header
from l0eval.spec import resolve_family
from l0eval.toy.model import ToyModel
from l0eval.toy.run import assess_on_toy, eval_batch


def run_sae_family(family: SAEFamily, device: str = "cpu") -> dict:
    toy_name = family.activations.get("toy")
    if toy_name is None:
        raise L0EvalError(f"family '{family.name}' needs LLM activations ({family.model}, {family.hook}), which "
                          "this version of l0eval cannot compute yet; families with `activations: {toy: NAME}` "
                          "run on a toy's data")
    toy_spec = resolve_family(toy_name)
    if toy_spec.toy.d_model != family.d_in:
        raise L0EvalError(f"family '{family.name}' has d_in {family.d_in} but toy '{toy_name}' has d_model "
                          f"{toy_spec.toy.d_model}")
    header = run_header(device)
    model = ToyModel(toy_spec.toy)
    saes = load_family(family, device)
    x, features = eval_batch(model, toy_spec)
    identities = []
    for member, sae in zip(family.members, saes):
        nominal = member.nominal_l0 if member.nominal_l0 is not None else getattr(sae.cfg, "k", None)
        if nominal is None:
            raise L0EvalError(f"member '{member.id}' has no nominal_l0 and its config has no k; set nominal_l0")
        identities.append({"id": member.id, "l0": float(nominal), "seed": 0, "trained_here": False})
    assessment = assess_on_toy(toy_spec, model, saes, identities, x, features)
    flag_l0_disagreements(assessment["saes"])
    family_record = {"name": family.name, "kind": "saes", "description": family.description, "d_in": family.d_in,
                     "source": family.source, "activations": family.activations, "spec_path": family.spec_path,
                     "selectors": {"snd_n": list(toy_spec.selectors.snd_n)},
                     "members": [{"id": m.id, "path": m.path, "repo_id": m.repo_id, "format": m.format,
                                  "nominal_l0": m.nominal_l0} for m in family.members]}
    return {"schema_version": 1, "family": family_record,
            "run": {**header, "finished": now(), "seeds": {"evaluation_data": toy_spec.evaluation.seed},
                    "training": {"reused_cache": True, "samples_per_sae": None, "note": "SAEs loaded, not trained"},
                    "evaluation": assessment.pop("evaluation"), "metric_versions": METRIC_VERSIONS},
            **assessment}


# Loaders that pick the wrong architecture or drop a threshold show up as an L0 far from the release's.
L0_DISAGREEMENT = 0.5


def flag_l0_disagreements(entries: list[dict]) -> None:
    """Warn, in the results and on stderr, when a member's measured L0 is far from its nominal L0."""
    for entry in entries:
        nominal, measured = entry["nominal_l0"], entry["measured_l0"]
        if nominal and abs(measured - nominal) > L0_DISAGREEMENT * nominal:
            entry["warning"] = (f"measured L0 {measured:.3g} is far from nominal {nominal:g}: check that the SAE "
                                "was loaded with the right architecture and threshold")
            print(f"l0eval: warning: {entry['id']}: {entry['warning']}", file=sys.stderr)
