"""Selection: L0 selectors over a family's metric table, their bootstrap and the verdict against ground truth."""
