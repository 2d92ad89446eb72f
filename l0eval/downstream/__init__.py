"""Downstream ground truth for LLM families: sparse probing (sae-probes and SAEBench protocols) and
first-letter feature absorption (SAEBench), each run through its library with our model and activations."""

import random


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch: the libraries' code draws from the global generators in places where
    their own seed argument does not reach. (Imported here: the CLI's parser reads constants of this package,
    and `l0eval families` must not pay for torch.)"""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
