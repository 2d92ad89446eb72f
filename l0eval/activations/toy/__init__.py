"""The paper's toy world: correlated sparse features embedded in a small space, with known truth."""
