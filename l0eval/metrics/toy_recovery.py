"""Ground-truth scores for toy SAEs, where the true feature directions E are known."""

from __future__ import annotations

import torch


def latent_feature_cosines(w_dec: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """cos(d_j, e_i) for every latent j (rows of W_dec [h, d]) and true feature i (columns of E [d, F]): [h, F]."""
    dec = w_dec.detach()
    dec = dec / dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
    features = embedding / embedding.norm(dim=0, keepdim=True).clamp(min=1e-12)
    return dec @ features


def feature_recovery(w_dec: torch.Tensor, embedding: torch.Tensor) -> float:
    """Mean over true features of the |cos| to their best-matching latent (1.0 = every feature found)."""
    return float(latent_feature_cosines(w_dec, embedding).abs().max(dim=0).values.mean())


def feature_mixing(w_dec: torch.Tensor, embedding: torch.Tensor, feature: int = 0) -> float:
    """The small toy's mixing score: mean cos(d_j, e_feature) over the latents j != feature.

    Valid when latent j tracks feature j (SAEs initialised at the ground truth, as in the paper).
    Positive when latents absorb a positive component of the correlated feature, negative when negative.
    """
    cosines = latent_feature_cosines(w_dec, embedding)[:, feature]
    others = [j for j in range(embedding.shape[1]) if j != feature]
    return float(cosines[others].mean())
