"""Pretraining: the pure loop, the Ray Train recipe, memory, GPU strategies, sweeps and tracking."""
