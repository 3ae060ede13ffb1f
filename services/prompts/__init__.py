"""The prompt library: curated templates, the user's versions of them, few-shot prompts, A/B tests.

- `templates`: the template schema, strict `{{variable}}` rendering, the curated templates of
  configs/prompts/ and `count_curated()` (the benchmark key `templates`);
- `store`: versions in `workspace/prompts/` (every save a new immutable version), diff, revert;
- `fewshot`: a few-shot prompt from dataset examples (random or most similar), with its token count;
- `abtest`: two templates or versions on a labelled set through a served model, with a paired test.

The HTTP routes are in services/prompts_api.py; the page is ui/pages/11_Prompts.py; the ideas are
in docs/concepts/prompts.md.
"""

from services.prompts.templates import count_curated

__all__ = ["count_curated"]
