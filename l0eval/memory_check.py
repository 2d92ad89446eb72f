"""Sizes checked against the machine before anything is allocated: a family whose SAEs, batches or
evaluation set cannot fit is refused in one line with the amount it needs, instead of failing in
the allocator seconds or minutes into a run.

The estimates count the large float32 tensors (weights with their gradients and two Adam moments,
one batch of activations per SAE trained together, the evaluation set) and are lower bounds: a
refusal means the run certainly cannot fit; a pass does not promise it will.
"""

from __future__ import annotations

from l0eval.errors import L0EvalError

FLOAT_BYTES = 4
TRAINING_COPIES = 4  # weights, gradients and Adam's two moments


def toy_family_bytes(spec) -> int:
    """What training and evaluating a toy ``FamilySpec`` holds in memory at once (lower bound)."""
    toy, sae, training = spec.toy, spec.sae, spec.training
    members = len(sae.k_values) * len(training.seeds) * (len(spec.mixing.rho) if spec.mixing else 1)
    weights = members * (2 * toy.d_model * sae.d_sae + sae.d_sae + toy.d_model)
    batch = training.batch_size * (toy.n_features + toy.d_model + members * (sae.d_sae + toy.d_model))
    evaluation = spec.evaluation.samples * (toy.n_features + toy.d_model + sae.d_sae)
    model = toy.n_features * (toy.n_features + toy.d_model)  # correlation factor and embedding
    return FLOAT_BYTES * (TRAINING_COPIES * weights + batch + evaluation + model)


def trained_saes_bytes(d_in: int, width: int, members: int, batch_size: int) -> int:
    """What ``l0eval train`` holds while training ``members`` SAEs together (activations memory-mapped)."""
    weights = members * (2 * d_in * width + width + d_in)
    return FLOAT_BYTES * (TRAINING_COPIES * weights + batch_size * (d_in + members * (width + d_in)))


def require(needed: int, what: str, device: str = "cpu") -> None:
    """Refuse ``what`` when ``needed`` bytes exceed what the device has free."""
    available, where = _available(device)
    if needed > available:
        raise L0EvalError(f"{what} needs at least {_size(needed)} of memory; {where} has {_size(available)} "
                          "available: use smaller sizes")


def _available(device: str) -> tuple[int, str]:
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free, device
    import psutil

    return psutil.virtual_memory().available, "this machine"


def _size(count: int) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,} bytes"
