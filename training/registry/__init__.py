"""Model management: the registry of every model and its lineage, model cards, checkpoint diffs, import and publish, quantization."""
