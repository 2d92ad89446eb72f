"""One torch thread count for every process of a run, so that CPU floats agree across executors.

torch splits CPU reductions (sums, matmuls) by thread, so two processes with different thread counts
round differently; Ray starts its workers with ``OMP_NUM_THREADS=1`` while a plain process uses every
core. The run's count is chosen once, in the process the user started (``$L0EVAL_TORCH_THREADS``, else
torch's own default there), set in that process and handed to every Ray worker, and recorded as
``run.torch_threads`` in the results.
"""

from __future__ import annotations

import os

from l0eval.errors import L0EvalError

ENV = "L0EVAL_TORCH_THREADS"


def chosen() -> int:
    """The thread count this run uses: ``$L0EVAL_TORCH_THREADS`` if set, else torch's default here."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        import torch

        return torch.get_num_threads()
    if not raw.isdigit() or int(raw) < 1:
        raise L0EvalError(f"{ENV}={raw!r}: must be a whole number >= 1")
    return int(raw)


def pin(threads: int) -> int:
    """Make torch in this process use ``threads`` intra-op threads; returns it."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
