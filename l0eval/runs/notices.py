"""What a run tells the user beside its results: metrics it skipped, members whose L0 looks wrong."""

from __future__ import annotations

import sys

# Loaders that pick the wrong architecture or drop a threshold show up as an L0 far from the release's.
L0_DISAGREEMENT = 0.5


def report_skipped(skipped: dict[str, str]) -> None:
    for name, reason in skipped.items():
        print(f"l0eval: skipped {name}: {reason}", file=sys.stderr)


def flag_l0_disagreements(entries: list[dict]) -> None:
    """Warn, in the results and on stderr, when a member's measured L0 is far from its nominal L0."""
    for entry in entries:
        nominal, measured = entry["nominal_l0"], entry["measured_l0"]
        if nominal and measured is not None and abs(measured - nominal) > L0_DISAGREEMENT * nominal:
            entry["warning"] = (f"measured L0 {measured:.3g} is far from nominal {nominal:g}: check that the SAE "
                                "was loaded with the right architecture and threshold")
            print(f"l0eval: warning: {entry['id']}: {entry['warning']}", file=sys.stderr)
