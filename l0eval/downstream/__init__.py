"""Downstream ground truth for LLM families: sparse probing (sae-probes and SAEBench protocols) and
first-letter feature absorption (SAEBench), each run through its library with our model and activations."""
