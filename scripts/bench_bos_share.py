"""How much of an LLM family's activation variance sits on the BOS position (the case for `exclude_bos`).

Reads the family's activation cache (filled by `l0eval run`/`train`; computed here if missing) in one
pass and writes results/bench/bos_share.json: the BOS rows' share of the centred variance (about the mean of
all rows, what FVU divides by), and the median norms of BOS and other rows.

    python scripts/bench_bos_share.py [--family smollm2-l0] [--out results/bench/bos_share.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from l0eval.activations.llm.activation_cache import bos_rows
from l0eval.activations.llm.pipeline import activation_cache
from l0eval.family.catalog import resolve
from l0eval.results import library_versions, now, write_json


def bos_share(shards, context: int) -> dict:
    """One pass of float64 sums per group (BOS rows, other rows); Σ_g ||x - μ||² follows from them."""
    count, total, squares, norms = np.zeros(2), np.zeros((2, 0)), np.zeros(2), ([], [])
    for shard in shards:
        rows = np.asarray(shard, dtype=np.float64)
        is_bos = bos_rows(rows.shape[0], context)
        if total.shape[1] == 0:
            total = np.zeros((2, rows.shape[1]))
        for group, part in enumerate((rows[is_bos], rows[~is_bos])):
            count[group] += part.shape[0]
            total[group] += part.sum(0)
            row_norms = np.linalg.norm(part, axis=1)
            squares[group] += (row_norms ** 2).sum()
            norms[group].append(row_norms)
    mean = total.sum(0) / count.sum()
    centred = squares - 2 * total @ mean + count * (mean @ mean)
    bos_norm, other_norm = (float(np.median(np.concatenate(n))) for n in norms)
    return {"bos_rows": int(count[0]), "other_rows": int(count[1]),
            "bos_share_of_centred_variance": float(centred[0] / centred.sum()),
            "median_norm_bos": bos_norm, "median_norm_other": other_norm, "norm_ratio": bos_norm / other_norm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="smollm2-l0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/bench/bos_share.json")
    args = parser.parse_args()
    spec = resolve(args.family).activations
    if not spec.prepend_bos:
        raise SystemExit(f"family {args.family} prepends no BOS")
    _, cache = activation_cache(spec, args.device, progress=True)
    payload = {"benchmark": "BOS share of the activation variance", "family": args.family, "date": now(),
               "model": spec.model, "hook": spec.hook, "corpus": spec.corpus, "context": spec.context,
               "library_versions": library_versions(), **bos_share(cache.shards(), spec.context)}
    path = write_json(Path(args.out), payload)
    print(f"BOS rows carry {payload['bos_share_of_centred_variance']:.1%} of the centred variance; median norm "
          f"{payload['median_norm_bos']:.0f} vs {payload['median_norm_other']:.0f} ({payload['norm_ratio']:.0f}x) "
          f"-> {path}")


if __name__ == "__main__":
    main()
