"""LLM activations: hook points on Hugging Face models, token sources, the on-disk activation cache."""
