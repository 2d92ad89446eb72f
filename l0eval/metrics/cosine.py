"""Mean absolute pairwise cosine of decoder rows (c_dec) or encoder columns (c_enc).

    c = 2 / (h (h - 1)) * sum_{i<j} |cos(v_i, v_j)|

(the paper's "alternate metric": normalize, S = W W^T, mean of |triu(S, 1)|). Computed in row blocks
so a 65k-wide SAE never materialises the h x h matrix.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def mean_abs_pairwise_cosine(vectors: torch.Tensor, block_rows: int = 4096) -> float:
    """vectors: [h, d], one vector per row. Zero rows count as cosine 0 with everything."""
    count = vectors.shape[0]
    if count < 2:
        raise ValueError("pairwise cosine needs at least two vectors")
    # float32 matmuls (float64 ones are several times slower on CPU and GPU); sums accumulate in float64
    unit = vectors.float()
    unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)
    total = torch.zeros((), dtype=torch.float64, device=unit.device)
    for start in range(0, count, block_rows):
        block = unit[start:start + block_rows] @ unit.T  # [rows, h]
        rows = torch.arange(start, start + block.shape[0], device=block.device)
        upper = torch.arange(count, device=block.device).unsqueeze(0) > rows.unsqueeze(1)
        total += block.abs().masked_fill(~upper, 0.0).sum(dtype=torch.float64)
    return float(total / (count * (count - 1) / 2))


def decoder_cosine(w_dec: torch.Tensor) -> float:
    """c_dec: W_dec is [h, d_in], rows are latents."""
    return mean_abs_pairwise_cosine(w_dec)


def encoder_cosine(w_enc: torch.Tensor) -> float:
    """c_enc: W_enc is [d_in, h], columns are latents."""
    return mean_abs_pairwise_cosine(w_enc.T)
