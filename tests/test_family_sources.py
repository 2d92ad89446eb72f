"""A new activation source is one module and one registration: a dummy source, defined and registered in
this file alone, runs a family of SAEs end to end through `l0eval run`."""

from dataclasses import dataclass

import pytest
import torch
import yaml

from l0eval.cli import main
from l0eval.errors import SpecError
from l0eval.family.catalog import resolve
from l0eval.family.model import NO_GROUND_TRUTH, ActivationSource
from l0eval.family.sources import register_activation_source
from l0eval.family.validation import NON_NEGATIVE_INT, POSITIVE_INT, check_keys
from l0eval.results import read_results
from l0eval.runs.streamed import BATCH_ROWS, evaluate_streamed
from l0eval.train.batched import batchtopk_sae, sae_lens_init

D_MODEL, WIDTH, K_VALUES = 8, 16, (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class GaussianActivations(ActivationSource):
    """Standard-normal activations: no model, no ground truth, only the shared streamed pass."""

    kind = "gaussian"
    d_model: int
    rows: int
    seed: int = 0

    def record(self):
        return {"d_model": self.d_model, "rows": self.rows, "seed": self.seed}

    def inputs_per_sae(self) -> int:
        return self.rows

    def ground_truth(self):
        return NO_GROUND_TRUTH

    def evaluate(self, family, obtained, job):
        data = torch.randn(self.rows, self.d_model, generator=torch.Generator().manual_seed(self.seed))
        return evaluate_streamed(family, obtained, job, data.split(BATCH_ROWS), self.rows)


def parse_gaussian(value, context) -> GaussianActivations:
    spec = check_keys(value, {"d_model", "rows", "seed"}, context.where, required={"d_model", "rows"})
    return GaussianActivations(POSITIVE_INT.check(spec["d_model"], f"{context.where}.d_model"),
                               POSITIVE_INT.check(spec["rows"], f"{context.where}.rows"),
                               NON_NEGATIVE_INT.check(spec.get("seed", 0), f"{context.where}.seed"))


register_activation_source("gaussian", parse_gaussian)


def gaussian_family(tmp_path, activations: dict) -> str:
    members = []
    for index, k in enumerate(K_VALUES):
        folder = tmp_path / "saes" / f"k{k:g}"
        batchtopk_sae(sae_lens_init(D_MODEL, WIDTH, seed=index), k).save_model(str(folder))
        members.append({"path": str(folder), "nominal_l0": k})
    path = tmp_path / "gaussian.yaml"
    path.write_text(yaml.safe_dump({"name": "gaussian-family", "kind": "saes", "d_in": D_MODEL, "width": WIDTH,
                                    "members": members, "activations": activations}))
    return str(path)


def test_a_registered_source_runs_a_family_end_to_end(tmp_path):
    path = gaussian_family(tmp_path, {"gaussian": {"d_model": D_MODEL, "rows": 3 * BATCH_ROWS, "seed": 3}})
    assert main(["run", "--family", path, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    results = read_results(tmp_path / "out" / "gaussian-family.json")
    assert results["family"]["activations"] == {"gaussian": {"d_model": D_MODEL, "rows": 3 * BATCH_ROWS, "seed": 3}}
    assert [entry["nominal_l0"] for entry in results["saes"]] == list(K_VALUES)
    # BatchTopK keeps exactly k latents per input on average over each batch
    assert [entry["measured_l0"] for entry in results["saes"]] == pytest.approx(list(K_VALUES))
    assert all(len(entry["batches"]["rows"]) == 3 for entry in results["saes"])
    assert [row["l0"] for row in results["by_l0"]] == list(K_VALUES)
    assert results["selectors"]["argmin_c_dec"]["chosen_l0"] in K_VALUES
    assert results["ground_truth"]["true_l0"] is None


def test_a_registered_source_reports_bad_values_like_any_family_file(tmp_path):
    path = gaussian_family(tmp_path, {"gaussian": {"d_model": D_MODEL, "rowz": 10}})
    with pytest.raises(SpecError, match=r"unknown key 'activations.gaussian.rowz' \(did you mean 'rows'\?\)"):
        resolve(path)
