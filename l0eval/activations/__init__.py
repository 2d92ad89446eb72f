"""Activation sources: the toy generator and LLM corpora (one cached model pass per family)."""
