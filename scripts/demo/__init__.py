"""The synthetic-music demo dataset, one part per file (see scripts/make_demo_dataset.py)."""
