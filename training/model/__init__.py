"""The model: the transformer (one file), its configurator, inspection, export and checkpoints."""
