"""Build and evaluate the offline LLM family `smollm2-l0` end to end (no network, CPU is enough).

1. `l0eval train`: one SmolLM2-135M pass over the corpus fills the activation cache
   (blocks.12.hook_resid_post, 4096 sequences x 128 tokens of sae-probes' news articles), then six BatchTopK
   SAEs (width 2048, k = 8..256) train together on it, BOS positions left out (the family's `exclude_bos`),
   and join the family as trained-here members. lr 1e-3 instead of the paper's 3e-4, as for the default
   toy: the CPU budget is ~250 steps, far from the paper's tens of thousands.
2. `l0eval run`: every metric on the same cached activations; writes results/smollm2-l0.json.

Both steps resume if interrupted. On the 2-core development machine: ~25 min of model pass and ~20 min of
training (recorded per member under family.members[].training and run.wall_seconds).

    python scripts/smollm2_family.py [--device cuda] [--samples 500000]
"""

from __future__ import annotations

import argparse
import sys

from l0eval.cli import main as l0eval

L0S = ["8", "16", "32", "64", "128", "256"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", default="1000000", help="training tokens per SAE")
    parser.add_argument("--lr", default="1e-3")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    steps = (["train", "--family", "smollm2-l0", "--l0", *L0S, "--samples", args.samples, "--lr", args.lr,
              "--device", args.device],
             ["run", "--family", "smollm2-l0", "--out", args.out, "--device", args.device, "--force"])
    for step in steps:
        if l0eval(step) != 0:
            sys.exit(f"`l0eval {' '.join(step)}` failed")


if __name__ == "__main__":
    main()
