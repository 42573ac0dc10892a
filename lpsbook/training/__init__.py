"""Training many models at once (packed) and model sets on disk (build, verify, extract, load).
Imports from core only."""
