"""Build and evaluate the offline LLM family `smollm2-l0` end to end (no network, CPU is enough).

1. `l0eval train`: one SmolLM2-135M pass over the corpus fills the activation cache
   (blocks.12.hook_resid_post, 5120 sequences x 128 tokens of sae-probes' news articles), then eleven BatchTopK
   SAEs (width 2048, k = 8, 11, 16, ..., 181, 256) train together on the first 4096 sequences, BOS positions
   left out (the family's `exclude_bos`), and join the family as trained-here members. The last 1024
   sequences are held out (`heldout_sequences`): every metric is measured on them. lr 1e-3 instead of the
   paper's 3e-4, as for the default toy: the CPU budget is ~250 steps, far from the paper's tens of thousands.
2. `l0eval run`: every metric on the held-out cached activations; writes results/smollm2-l0.json.

Both steps resume if interrupted. Times on the 2-core development machine are recorded per member under
family.members[].training and in run.wall_seconds (README, "The offline LLM family").

    python scripts/smollm2_family.py [--device cuda] [--samples 500000]
"""

from __future__ import annotations

import argparse
import sys

from l0eval.cli import main as l0eval

# docs/selectors.md#grids: the sweep rule round(2^(i/2)), here i = 6..16 (the range 8..256 of the earlier grid)
L0S = [str(round(2 ** (i / 2))) for i in range(6, 17)]


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
