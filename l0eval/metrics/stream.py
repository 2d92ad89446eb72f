"""Stream batches of inputs once through every SAE of a family and collect each SAE's metrics.

The SAEs are sae-lens SAE objects; only ``encode``, ``decode``, ``W_enc``, ``W_dec`` and ``b_dec`` are
used, so any architecture sae-lens loads works. Memory is bounded by one batch and one SAE's
activations at a time, whatever the family size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from l0eval.metrics.cosine import decoder_cosine, encoder_cosine
from l0eval.metrics.decoder_projection import DecoderProjectionAccumulator
from l0eval.metrics.reconstruction import ReconstructionAccumulator
from l0eval.metrics.toy_recovery import feature_recovery


@torch.no_grad()
def evaluate_family(saes: Sequence, batches: Iterable[torch.Tensor], n_values: Sequence[float],
                    normalize_decoder: bool = False, embedding: torch.Tensor | None = None,
                    progress_total: int | None = None, keep_batches: bool = False) -> list[dict]:
    """Metrics per SAE: reconstruction/sparsity, s_n^dec for each n, c_dec, c_enc and (toys) feature recovery.

    With ``progress_total`` (the number of input rows), a progress bar shows rows (tokens) per second.
    ``keep_batches`` adds ``batches``: each batch's own ``mse``, ``variance_explained``, ``fvu`` and
    ``s_n_dec`` (n -> list), in batch order, so that a bootstrap can resample batches (l0eval.selection.bootstrap)."""
    recon = [ReconstructionAccumulator(sae.cfg.d_sae, sae.W_dec.device) for sae in saes]
    snd = [DecoderProjectionAccumulator(sae.W_dec, sae.b_dec, n_values, normalize_decoder) for sae in saes]
    bar = tqdm(total=progress_total, unit="tok", unit_scale=True, desc=f"{len(saes)} SAEs",
               disable=progress_total is None)
    for batch in batches:
        bar.update(batch.shape[0])
        for sae, recon_acc, snd_acc in zip(saes, recon, snd):
            x = batch.to(sae.W_dec.device, sae.W_dec.dtype)
            acts = sae.encode(x)
            recon_acc.update(x, sae.decode(acts), acts)
            snd_acc.update(x)
    bar.close()
    results = []
    for sae, recon_acc, snd_acc in zip(saes, recon, snd):
        metrics = recon_acc.compute()
        metrics["s_n_dec"] = {_n_key(n): value for n, value in snd_acc.compute().items()}
        metrics["c_dec"] = decoder_cosine(sae.W_dec)
        metrics["c_enc"] = encoder_cosine(sae.W_enc)
        if embedding is not None:
            metrics["feature_recovery"] = feature_recovery(sae.W_dec, embedding.to(sae.W_dec.device))
        if keep_batches:
            metrics["batches"] = {**{name: [batch[name] for batch in recon_acc.per_batch]
                                     for name in ("mse", "variance_explained", "fvu")},
                                  "s_n_dec": {_n_key(n): values for n, values in snd_acc.per_batch.items()}}
        results.append(metrics)
    return results


def _n_key(n: float) -> str:
    """JSON object keys are strings: '12' for integer n, '0.37' otherwise."""
    return str(int(n)) if float(n).is_integer() else f"{n:g}"
