"""l0eval: which L0 is right for this sparse autoencoder?

Data flows one way: family -> activations -> metrics -> heuristics -> results -> leaderboard.
"""

__version__ = "0.1.0"
