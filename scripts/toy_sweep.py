"""The toy sweep behind the leaderboard's verdict (issue 7): every `sweep-*` toy family, run and written
to results/<family>.json, then the leaderboard regenerated from everything in results/.

    python scripts/toy_sweep.py [--device cpu] [--out results] [--leaderboard leaderboard]

The families (l0eval/family/builtin/sweep-*.yaml) differ in true L0 (4 to 25), width (including width >
number of true features) and correlation strength (none to strong). From an empty cache the sweep
trains 100 SAEs (about 40 CPU-minutes: 17-29 minutes per family on the development machine's 2 cores
shared with other jobs, `run.wall_seconds` in each file); trained SAEs are cached, so a second run
only re-evaluates (a few minutes).
"""

from __future__ import annotations

import argparse
import sys

from l0eval.cli import main
from l0eval.family.toy_spec import BUILTIN_DIR

SWEEP = sorted(BUILTIN_DIR.glob("sweep-*.yaml"))


def run_sweep(device: str, out: str, leaderboard: str) -> int:
    for path in SWEEP:
        status = main(["run", "--family", str(path), "--out", out, "--device", device, "--quiet", "--force"])
        if status:
            return status
    return main(["leaderboard", "--results", out, "--out", leaderboard])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results")
    parser.add_argument("--leaderboard", default="leaderboard")
    args = parser.parse_args()
    sys.exit(run_sweep(args.device, args.out, args.leaderboard))
