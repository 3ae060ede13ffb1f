"""Decoding: how a next-token distribution becomes text. Read beside docs/concepts/decoding.md.

* `processors.py`: each logits processor as one small function (temperature, top-k, top-p,
  min-p, repetition and presence/frequency penalties);
* `strategies.py`: greedy decoding and sampling with the KV cache, tracing every step;
* `beam.py`: beam search, recording the whole search tree;
* `bench.py`: timings on the demo-size model.

Plain PyTorch on our own `Transformer`, pinned to Hugging Face `transformers` by
tests/unit/test_decoding.py.
"""
