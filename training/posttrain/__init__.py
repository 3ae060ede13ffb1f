"""Post-training: instruction data from the starter world (instructions.py) and its file shapes (formats.py)."""
