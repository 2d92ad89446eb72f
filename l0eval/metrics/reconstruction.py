"""Streaming reconstruction and sparsity metrics, each with its formula named in its version string.

Definitions drift between libraries (see docs/metrics.md), so we report both:
- ``mse``: E_x ||x_hat - x||^2, summed over dimensions, averaged over inputs (the paper's toy MSE);
- ``variance_explained``: 1 - E||x_hat - x||^2 / E||x||^2, *uncentred* (the paper's toy VE);
- ``fvu``: E||x_hat - x||^2 / (E||x||^2 - ||E x||^2), centred fraction of variance unexplained
  (sae-lens 6.54's corrected explained-variance denominator; 1 - fvu is its explained_variance);
- ``l0``: mean number of non-zero latents per input; ``dead_fraction``: latents that never fired.
"""

from __future__ import annotations

import torch


class ReconstructionAccumulator:
    """Accumulates sums in float64 over batches of (x, x_hat, latent activations)."""

    def __init__(self, d_sae: int, device: torch.device | str = "cpu"):
        self.n = 0
        self.squared_error = 0.0
        self.squared_norm = 0.0
        self.active_latents = 0.0
        self.sum_x: torch.Tensor | None = None
        self.fired = torch.zeros(d_sae, dtype=torch.bool, device=device)
        self.per_batch: list[dict[str, float | None]] = []  # each batch's own mse, VE and FVU (for bootstraps)

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, acts: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        if not torch.isfinite(x_hat).all():
            raise FloatingPointError("the SAE produced NaN or inf reconstructions")
        squared_error, squared_norm, batch_sum = float((x_hat - x).square().sum()), float(x.square().sum()), x.sum(0)
        self.per_batch.append(_reconstruction_metrics(x.shape[0], squared_error, squared_norm, batch_sum))
        self.n += x.shape[0]
        self.squared_error += squared_error
        self.squared_norm += squared_norm
        self.sum_x = batch_sum if self.sum_x is None else self.sum_x + batch_sum
        active = acts != 0
        self.active_latents += float(active.sum())
        self.fired |= active.any(0).to(self.fired.device)

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no inputs were seen")
        return {
            **_reconstruction_metrics(self.n, self.squared_error, self.squared_norm, self.sum_x),
            "l0": self.active_latents / self.n,
            "dead_fraction": float((~self.fired).float().mean()),
        }


def _reconstruction_metrics(n: int, squared_error: float, squared_norm: float,
                            sum_x: torch.Tensor) -> dict[str, float | None]:
    mse = squared_error / n
    second_moment = squared_norm / n
    variance = second_moment - float((sum_x / n).square().sum())
    return {"mse": mse, "variance_explained": 1.0 - mse / second_moment,
            "fvu": mse / variance if variance > 0 else None}
