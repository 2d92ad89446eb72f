"""How many sequences one forward pass may take: estimated from free memory and the model's shape.

The estimate is deliberately simple: with gradients off, one decoder layer's intermediates are alive at
a time, so a sequence costs about ``context * (4 * d_model + 2 * d_mlp + heads * context)`` numbers
(residual stream and attention projections, the MLP's up/gate projections, and one attention-score
row per head), plus the kept hook output. Half of the free memory is used, leaving room for the
weights' temporaries and the allocator's slack. It only sets the forward micro-batch: the cache's
shards (and so the cached activations' identity) do not depend on it.
"""

from __future__ import annotations

import psutil
import torch
from torch import nn

MEMORY_FRACTION = 0.5


def free_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return int(psutil.virtual_memory().available)


def bytes_per_sequence(model: nn.Module, context: int) -> int:
    config = model.config
    d_model = config.hidden_size
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model
    heads = config.num_attention_heads
    element = next(model.parameters()).element_size()
    per_token = 5 * d_model + 2 * d_mlp + heads * context
    return context * per_token * element


def auto_forward_batch(model: nn.Module, context: int, device: str, most: int) -> int:
    """The largest micro-batch (1..``most``) whose estimated memory fits in half the free memory."""
    fits = int(MEMORY_FRACTION * free_memory_bytes(device) // bytes_per_sequence(model, context))
    return max(1, min(most, fits))
