"""Similarity methods, one estimator interface and one registry keyed by short ids: LPS, the baselines,
probing, the graph learner, activation similarity. Imports from core and training."""
