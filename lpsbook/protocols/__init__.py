"""Experiment protocols and their typed results: the paper's protocols (classification, retrieval,
transferability, branches, ablation), transfer measurements. Imports from core, training and methods."""
