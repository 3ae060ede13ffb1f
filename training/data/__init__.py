"""The data pipeline: sources, cleaning stages, splits and versioned snapshots (see pipeline.py)."""
