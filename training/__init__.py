"""Training side of LLM Playground: pure PyTorch building blocks plus Ray recipes.

Ray is imported only by the recipes (`pretrain.py`, ...); everything else here runs
in a plain Python process and is testable without a cluster.
"""
