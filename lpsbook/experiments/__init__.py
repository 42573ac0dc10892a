"""Long runs whose results are committed with provenance: the recipe ladder and ModelSet500.
May import from every other folder; only cli.py sits above."""
