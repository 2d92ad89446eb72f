"""Stream batches of inputs through every SAE of a family and collect each SAE's metrics.

A second pass is made only for the SAEs with dead latents (their live-latent metrics).

The SAEs are sae-lens SAE objects; only ``encode``, ``decode``, ``W_enc``, ``W_dec`` and ``b_dec`` are
used, so any architecture sae-lens loads works. Memory is bounded by one batch and one SAE's
activations at a time, whatever the family size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from l0eval.metrics.cosine import decoder_cosine, encoder_cosine
from l0eval.metrics.decoder_projection import DecoderProjectionAccumulator
from l0eval.metrics.reconstruction import ReconstructionAccumulator
from l0eval.metrics.toy_recovery import feature_recovery


@torch.no_grad()
def evaluate_family(saes: Sequence, batches: Sequence[torch.Tensor] | Callable[[], Iterable[torch.Tensor]],
                    n_values: Sequence[float],
                    normalize_decoder: bool = False, embedding: torch.Tensor | None = None,
                    progress_total: int | None = None, keep_batches: bool = False) -> list[dict]:
    """Metrics per SAE: reconstruction/sparsity, s_n^dec for each n, c_dec, c_enc, their versions over live
    latents only (``s_n_dec_alive``, ``c_dec_alive``) and (toys) feature recovery.

    ``batches``: the evaluation batches, or a function that yields the same batches each time it is called
    (a stream from disk): a second pass is made for the SAEs with dead latents, whose live latents are known
    only after the first. With
    ``progress_total`` (the number of input rows), a progress bar shows rows (tokens) per second.
    ``keep_batches`` adds ``batches``: each batch's sufficient statistics (``rows``, ``squared_error``,
    ``squared_norm``, ``sum_x_gram``) and s_n^dec order statistics (``s_n_dec``, ``s_n_dec_alive``: n -> list),
    in batch order, from which a bootstrap recomputes the pooled metrics (l0eval.selection.bootstrap)."""
    if not callable(batches):
        batches = functools.partial(iter, batches)
    recon = [ReconstructionAccumulator(sae.cfg.d_sae, sae.W_dec.device) for sae in saes]
    snd = [DecoderProjectionAccumulator(sae.W_dec, sae.b_dec, n_values, normalize_decoder) for sae in saes]
    _stream(batches(), saes, progress_total, lambda sae, index, x: _update_core(sae, recon[index], snd[index], x))
    alive = [acc.fired for acc in recon]
    snd_alive = [snd_acc if bool(live.all()) else
                 DecoderProjectionAccumulator(sae.W_dec[live], sae.b_dec, [n for n in n_values if n < int(live.sum())],
                                              normalize_decoder)
                 for sae, live, snd_acc in zip(saes, alive, snd)]
    partial = [index for index, live in enumerate(alive) if not bool(live.all())]
    if partial:
        _stream(batches(), [saes[i] for i in partial], progress_total,
                lambda sae, index, x: snd_alive[partial[index]].update(x.to(sae.W_dec.device, sae.W_dec.dtype)))
    results = []
    for sae, recon_acc, snd_acc, alive_acc, live in zip(saes, recon, snd, snd_alive, alive):
        metrics = recon_acc.compute()
        metrics["s_n_dec"] = _by_n(snd_acc.compute())
        metrics["s_n_dec_alive"] = _by_n(alive_acc.compute()) if alive_acc.n_values else {}
        metrics["c_dec"] = decoder_cosine(sae.W_dec)
        metrics["c_dec_alive"] = decoder_cosine(sae.W_dec[live]) if int(live.sum()) >= 2 else None
        metrics["c_enc"] = encoder_cosine(sae.W_enc)
        if embedding is not None:
            metrics["feature_recovery"] = feature_recovery(sae.W_dec, embedding.to(sae.W_dec.device))
        if keep_batches:
            metrics["batches"] = {**recon_acc.batch_statistics(), "s_n_dec": _by_n(snd_acc.per_batch),
                                  "s_n_dec_alive": _by_n(alive_acc.per_batch)}
        results.append(metrics)
    return results


def _update_core(sae, recon_acc: ReconstructionAccumulator, snd_acc: DecoderProjectionAccumulator,
                 batch: torch.Tensor) -> None:
    x = batch.to(sae.W_dec.device, sae.W_dec.dtype)
    acts = sae.encode(x)
    recon_acc.update(x, sae.decode(acts), acts)
    snd_acc.update(x)


def _stream(batches: Iterable[torch.Tensor], saes: Sequence, progress_total: int | None, update) -> None:
    """One pass: ``update(sae, index, batch)`` for every batch and SAE, with the progress bar."""
    bar = tqdm(total=progress_total, unit="tok", unit_scale=True, desc=f"{len(saes)} SAEs",
               disable=progress_total is None)
    for batch in batches:
        bar.update(batch.shape[0])
        for index, sae in enumerate(saes):
            update(sae, index, batch)
    bar.close()


def _by_n(values: dict) -> dict:
    return {_n_key(n): value for n, value in values.items()}


def _n_key(n: float) -> str:
    """JSON object keys are strings: '12' for integer n, '0.37' otherwise."""
    return str(int(n)) if float(n).is_integer() else f"{n:g}"
