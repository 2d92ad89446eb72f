"""Streaming reconstruction and sparsity metrics, each with its formula named in its version string.

Definitions drift between libraries (see docs/metrics.md), so we report both:
- ``mse``: E_x ||x_hat - x||^2, summed over dimensions, averaged over inputs (the paper's toy MSE);
- ``variance_explained``: 1 - E||x_hat - x||^2 / E||x||^2, *uncentred* (the paper's toy VE);
- ``fvu``: E||x_hat - x||^2 / (E||x||^2 - ||E x||^2), centred fraction of variance unexplained
  (sae-lens 6.54's corrected explained-variance denominator; 1 - fvu is its explained_variance);
- ``l0``: mean number of non-zero latents per input; ``dead_fraction``: latents that never fired.
"""

from __future__ import annotations

import numpy as np
import torch


class ReconstructionAccumulator:
    """Accumulates float64 sums per batch of (x, x_hat, latent activations): each batch's sufficient
    statistics are kept, and the metrics of the whole set are the pooled statistics of all its batches,
    computed by the same function (``pooled_reconstruction``) that a bootstrap applies to a draw of batches."""

    def __init__(self, d_sae: int, device: torch.device | str = "cpu"):
        self.active_latents = 0.0
        self.fired = torch.zeros(d_sae, dtype=torch.bool, device=device)
        self.per_batch: list[dict[str, float]] = []  # rows, squared_error, squared_norm of each batch
        self._batch_sums: list[torch.Tensor] = []  # each batch's sum of x (float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, acts: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        if not torch.isfinite(x_hat).all():
            raise FloatingPointError("the SAE produced NaN or inf reconstructions")
        self.per_batch.append({"rows": x.shape[0], "squared_error": float((x_hat - x).square().sum()),
                               "squared_norm": float(x.square().sum())})
        self._batch_sums.append(x.sum(0))
        active = acts != 0
        self.active_latents += float(active.sum())
        self.fired |= active.any(0).to(self.fired.device)

    def batch_statistics(self) -> dict[str, list]:
        """Per batch, in order: ``rows``, ``squared_error``, ``squared_norm``; and ``sum_x_gram``, the Gram
        matrix of the batches' sums of x (||sum over a draw w of batches||^2 = w^T G w: the centred FVU's mean)."""
        sums = torch.stack(self._batch_sums)
        return {**{key: [batch[key] for batch in self.per_batch] for key in BATCH_SUMS},
                "sum_x_gram": (sums @ sums.T).tolist()}

    def compute(self) -> dict[str, float | None]:
        if not self.per_batch:
            raise ValueError("no inputs were seen")
        statistics = self.batch_statistics()
        pooled = pooled_reconstruction(statistics, np.ones((1, len(self.per_batch))))
        rows = sum(statistics["rows"])
        return {**{name: float(value[0]) if np.isfinite(value[0]) else None for name, value in pooled.items()},
                "l0": self.active_latents / rows,
                "dead_fraction": float((~self.fired).float().mean())}


BATCH_SUMS = ("rows", "squared_error", "squared_norm")


def pooled_reconstruction(statistics: dict, weights: np.ndarray) -> dict[str, np.ndarray]:
    """mse, VE (uncentred) and FVU (centred; NaN without variance) pooled over batches, one value per row of
    ``weights`` [draws, batches] (how often each batch is in the draw; all ones: the whole set)."""
    rows, squared_error, squared_norm = (weights @ np.asarray(statistics[key], float) for key in BATCH_SUMS)
    gram = np.asarray(statistics["sum_x_gram"], float)
    mean_norm_sq = np.einsum("rb,bc,rc->r", weights, gram, weights) / rows ** 2
    mse = squared_error / rows
    second_moment = squared_norm / rows
    variance = second_moment - mean_norm_sq
    with np.errstate(divide="ignore", invalid="ignore"):
        fvu = np.where(variance > 0, mse / variance, np.nan)
    return {"mse": mse, "variance_explained": 1.0 - mse / second_moment, "fvu": fvu}
