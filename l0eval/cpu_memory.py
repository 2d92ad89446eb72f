"""Keep freed CPU memory for reuse instead of handing it back to the kernel (glibc's malloc).

A training step allocates and frees tensors of a few MB (the stacked [M, B, d] residual and [M, B, h]
activations). glibc serves blocks above its mmap threshold with mmap, unmaps them when freed, and trims
the heap's free top: the next step then faults every page in again, 4 KiB at a time, and the kernel's
share of the step's CPU time grows with the family (``scripts/bench_cpu_memory.py`` measures the default
toy's training with and without; ``results/bench/cpu_memory.json``). Two ``mallopt`` settings keep those
blocks in the heap and the heap's top mapped. What is allocated changes nowhere, so results are identical
(the benchmark checks it); the cost is that freed memory stays with the process (the heap's free top up to
``TRIM_THRESHOLD``, and blocks up to ``MMAP_THRESHOLD`` are served from the heap, where freed ones are reused).
PyTorch's CPU performance guide recommends the same remedy (or jemalloc/tcmalloc, not a dependency here).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
# blocks up to 32 MiB come from the heap (glibc's largest allowed threshold on 64-bit systems)
MMAP_THRESHOLD = 32 * 1024 * 1024
# the heap's free top goes back to the kernel only beyond 1 GiB
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Apply both settings to this process; False where the C library has no ``mallopt`` (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
