"""Families: what a family is (members x activations x ground truth), its parsing, built-in specs, catalog."""
