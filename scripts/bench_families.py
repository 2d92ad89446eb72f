"""Benchmark: how long `l0eval families` takes on a fresh process, offline, with an empty HF cache.

Writes results/bench/families.json (the issue's bar: under 3 seconds with 20+ hub families listed).

    python scripts/bench_families.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from l0eval.results import library_versions, now, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench/families.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache}
        seconds, output = [], ""
        for _ in range(args.repeats):
            started = time.perf_counter()
            output = subprocess.run([sys.executable, "-m", "l0eval.cli", "families"], env=env, check=True,
                                    capture_output=True, text=True).stdout
            seconds.append(time.perf_counter() - started)
    rows = output.splitlines()[2:]
    payload = {"benchmark": "`l0eval families`, fresh process, HF_HUB_OFFLINE=1, empty cache", "date": now(),
               "library_versions": library_versions(), "seconds": seconds, "median_seconds": statistics.median(seconds),
               "families_listed": len(rows),
               "hub_families_listed": sum(row.startswith(("saebench-", "gemma-scope-")) for row in rows)}
    path = write_json(Path(args.out), payload)
    print(f"{payload['families_listed']} families in {payload['median_seconds']:.2f}s (median of {args.repeats}) "
          f"-> {path}")


if __name__ == "__main__":
    main()
