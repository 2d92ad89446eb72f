"""The bootstrap resamples what the point estimate reports: pooled statistics of the drawn evaluation batches.

``test_point_choice_lies_in_its_own_interval_when_batches_differ`` fails on the bootstrap before issue 15
(commit aba582f), which averaged each batch's own FVU (centred on that batch's mean) while the point
estimate pooled all batches into one ratio.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from l0eval.metrics.stream import evaluate_family
from l0eval.selection.bootstrap import BootstrapDesign, bootstrap_selectors
from l0eval.selection.selectors import Selector, metric_row, reconstruction_budget


def axis_sae(keep_x0: float, keep_x1: float) -> StandardSAE:
    """A ReLU SAE on d=2 that reconstructs x0 scaled by keep_x0 and x1 by keep_x1 (latents +-e0, +-e1)."""
    sae = StandardSAE(StandardSAEConfig(d_in=2, d_sae=4))
    directions = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    with torch.no_grad():
        sae.W_enc.copy_(directions.T)
        sae.b_enc.zero_()
        sae.W_dec.copy_(directions * torch.tensor([keep_x0, keep_x0, keep_x1, keep_x1])[:, None])
        sae.b_dec.zero_()
    return sae


def two_kinds_of_batches(count: int = 20, rows: int = 200) -> list[torch.Tensor]:
    """Alternating batches: small variance along x0 only, then large variance along x1 only (LLM batches
    from different documents differ like this)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for index in range(count):
        values = torch.randn(rows, generator=generator)
        batch = torch.zeros(rows, 2)
        batch[:, index % 2] = values if index % 2 == 0 else 100.0 * values
        batches.append(batch)
    return batches


# Errors per L0: x1 (the large-variance direction) is reconstructed only at L0 16, x0 already at L0 2.
# Pooled FVU is dominated by x1: the budget rule picks 16. The mean of per-batch FVUs weighs both alike: 2.
SWEEP = {1: (0.0, 1 - 0.1 ** 0.5), 2: (1.0, 1 - 0.02 ** 0.5), 4: (1.0, 1 - 0.018 ** 0.5),
         8: (1.0, 1 - 0.016 ** 0.5), 16: (1.0, 1.0)}


def sweep_entries() -> list[dict]:
    saes = [axis_sae(*keep) for keep in SWEEP.values()]
    metrics = evaluate_family(saes, two_kinds_of_batches(), [1], keep_batches=True)
    return [{"id": f"k{l0}", "nominal_l0": float(l0), "measured_l0": None, "seed": 0,
             "batches": met.pop("batches"), "metrics": met} for l0, met in zip(SWEEP, metrics)]


def test_point_choice_lies_in_its_own_interval_when_batches_differ():
    entries = sweep_entries()
    table = pd.DataFrame([metric_row(e["nominal_l0"], e["metrics"]) for e in entries])
    budget = Selector("rd_budget_90", "test", reconstruction_budget(0.9))
    point = budget.pick(table)
    assert point == 16.0
    summary = bootstrap_selectors([budget], entries, {"rd_budget_90": point},
                                  BootstrapDesign(resamples=100, seed=0))["rd_budget_90"]
    low, high = summary["interval_90"]
    assert low <= point <= high
    assert summary["point_share"] > 0.9  # the resamples centre on the point choice, not on another L0


def test_identity_draw_gives_the_point_estimate():
    from l0eval.selection.bootstrap import pooled_member_values  # imported here: the file also runs on aba582f

    for entry in sweep_entries():
        batches = len(entry["batches"]["rows"])
        pooled = pooled_member_values(entry, np.ones((1, batches)))
        for name in ("mse", "variance_explained", "fvu"):
            assert pooled[name][0] == pytest.approx(entry["metrics"][name], rel=1e-12), name
        assert pooled["s_n_dec@1"][0] == pytest.approx(entry["metrics"]["s_n_dec"]["1"], rel=1e-12)


def test_pooled_fvu_is_centred_on_the_whole_set_not_on_each_batch():
    batches = two_kinds_of_batches()
    x = torch.cat(batches).double()
    sae = axis_sae(1.0, 0.5)
    metrics = evaluate_family([sae], batches, [1], keep_batches=True)[0]
    error = (x[:, 1] * 0.5).square().mean()
    assert metrics["fvu"] == pytest.approx(float(error / (x - x.mean(0)).square().sum(1).mean()), rel=1e-9)
    assert metrics["variance_explained"] == pytest.approx(float(1 - error / x.square().sum(1).mean()), rel=1e-9)


def test_dead_latents_are_masked_in_the_alive_versions():
    batches = two_kinds_of_batches()
    sae = axis_sae(1.0, 1.0)
    with torch.no_grad():
        sae.b_enc[3] = -1e6  # latent 3 (-e1) never fires
        sae.W_dec[3] = torch.tensor([0.6, 0.8])  # a random-looking row that a dead latent keeps
    metrics = evaluate_family([sae], batches, [1, 2], keep_batches=True)[0]
    assert metrics["dead_fraction"] == pytest.approx(0.25)
    live = sae.W_dec[:3].detach()
    unit = live / live.norm(dim=1, keepdim=True)
    assert metrics["c_dec_alive"] == pytest.approx(float((unit @ unit.T).abs().triu(1).sum() / 3), rel=1e-6)
    assert metrics["c_dec_alive"] != pytest.approx(metrics["c_dec"])
    assert set(metrics["s_n_dec_alive"]) == {"1", "2"} and len(metrics["batches"]["s_n_dec_alive"]["1"]) == 20
    first = (batches[0] @ live.T).flatten().sort(descending=True).values[1 * 200]  # order statistic, live rows
    assert metrics["batches"]["s_n_dec_alive"]["1"][0] == pytest.approx(float(first))
