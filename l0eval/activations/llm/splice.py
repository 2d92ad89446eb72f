"""LLM-side core metrics: the model's loss with each SAE's reconstruction spliced in at the hook.

Definitions follow SAELens/SAEBench ``core`` (formula and version: ``l0eval.metrics.registry.FORMULAS['spliced']``):
- ``ce_loss_score`` = (CE_zero - CE_sae) / (CE_zero - CE_clean): 1 when the SAE costs nothing, 0 when it is
  as bad as zero-ablating the hook; CE is next-token cross-entropy over every position but the last;
- ``kl_div_score`` = (KL_zero - KL_sae) / KL_zero, KL = sum_v p_clean (log p_clean - log p_patched) per
  position (SAEBench's direction), computed with log_softmax so it never becomes NaN.
Clean and zero-ablated passes run once per batch and are shared by every SAE of the family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from l0eval.activations.llm.hooks import HookPoint, decoder_layers, parse_hook


def _replace_at(model: nn.Module, hook: HookPoint, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Register a hook that swaps the residual stream at ``hook`` for ``replace(residual)``."""
    layer = decoder_layers(model)[hook.layer]
    if hook.position == "post":
        def post(module, args, output):
            if isinstance(output, tuple):
                return (replace(output[0]), *output[1:])
            return replace(output)

        return layer.register_forward_hook(post)

    def pre(module, args, kwargs):
        if args:
            return (replace(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}

    return layer.register_forward_pre_hook(pre, with_kwargs=True)


def _log_probs(model: nn.Module, tokens: torch.Tensor, hook: HookPoint,
               replace: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    handle = _replace_at(model, hook, replace) if replace is not None else None
    try:
        logits = model(input_ids=tokens, use_cache=False).logits
    finally:
        if handle is not None:
            handle.remove()
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def _cross_entropy(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Summed next-token CE over the batch's positions (all but the last)."""
    return -log_probs.gather(-1, tokens[:, 1:].unsqueeze(-1)).sum()


def _kl(clean: torch.Tensor, patched: torch.Tensor) -> torch.Tensor:
    return (clean.exp() * (clean - patched)).sum()


@torch.no_grad()
def spliced_metrics(model: nn.Module, token_batches: Sequence[torch.Tensor], hook: HookPoint | str,
                    saes: Sequence, progress: bool = False, exclude_bos: bool = False) -> list[dict[str, float]]:
    """Per SAE: CE and KL with the SAE's reconstruction in place of the residual stream at ``hook``;
    ``exclude_bos`` keeps the first position's own activation (SAEBench's
    ``exclude_special_tokens_from_reconstruction``). CE and KL still count every position."""
    hook = parse_hook(hook) if isinstance(hook, str) else hook
    totals = {"clean": 0.0, "zero": 0.0, "kl_zero": 0.0, "positions": 0}
    per_sae = [{"ce": 0.0, "kl": 0.0} for _ in saes]
    for tokens in tqdm(token_batches, desc=f"CE/KL with {len(saes)} SAEs spliced", unit="batch", disable=not progress):
        clean = _log_probs(model, tokens, hook)
        zero = _log_probs(model, tokens, hook, torch.zeros_like)
        totals["clean"] += float(_cross_entropy(clean, tokens))
        totals["zero"] += float(_cross_entropy(zero, tokens))
        totals["kl_zero"] += float(_kl(clean, zero))
        totals["positions"] += tokens.shape[0] * (tokens.shape[1] - 1)
        for sae, sums in zip(saes, per_sae):
            def reconstruct(residual, sae=sae):
                x = residual.to(sae.W_dec.device, sae.W_dec.dtype)
                out = sae.decode(sae.encode(x)).to(residual.dtype)
                if exclude_bos:
                    out[:, 0] = residual[:, 0]
                return out

            patched = _log_probs(model, tokens, hook, reconstruct)
            sums["ce"] += float(_cross_entropy(patched, tokens))
            sums["kl"] += float(_kl(clean, patched))
    n = totals["positions"]
    ce_clean, ce_zero, kl_zero = totals["clean"] / n, totals["zero"] / n, totals["kl_zero"] / n
    results = []
    for sums in per_sae:
        ce_sae, kl_sae = sums["ce"] / n, sums["kl"] / n
        results.append({
            "ce_loss_clean": ce_clean, "ce_loss_with_sae": ce_sae, "ce_loss_zero_ablation": ce_zero,
            "ce_loss_score": (ce_zero - ce_sae) / (ce_zero - ce_clean) if ce_zero != ce_clean else None,
            "kl_div_with_sae": kl_sae, "kl_div_zero_ablation": kl_zero,
            "kl_div_score": (kl_zero - kl_sae) / kl_zero if kl_zero > 0 else None,
        })
    return results
