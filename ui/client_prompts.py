"""The prompt library's calls (/api/prompts/...), mixed into `ui.client.PlaygroundClient`.

Kept apart from client.py so that file stays about the cluster; the methods use its `_request`,
so errors arrive as the same one-line `ApiError`. The Chat page can list templates and render one
as its system prompt or message with `prompt_templates` and `prompt_render`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class PromptsClientMixin:
    """Calls of the prompt library; needs the host class's `_request(method, path, **kwargs)`."""

    _request: Any

    def prompt_templates(self, category: str | None = None) -> list[dict]:
        """Every template's latest version: `name`, `title`, `category`, `variables`, `when_it_helps`, `version`."""
        return self._request("GET", "/api/prompts", params={"category": category} if category else None)

    def prompt_template(self, name: str, version: int | None = None) -> dict:
        """One version of a template (the latest by default), with `history`: every version."""
        return self._request("GET", f"/api/prompts/{quote(name, safe='')}",
                             params={"version": version} if version else None)

    def prompt_render(self, name: str, variables: dict[str, str], version: int | None = None,
                      model: str | None = None) -> dict:
        """The template filled in: `system` (or None), `text`, and `tokens` counted by `tokenizer`
        (`model`'s tokenizer, or whitespace words without one)."""
        return self._request("POST", "/api/prompts/render",
                             json={"name": name, "version": version, "variables": variables, "model": model})

    def prompt_save(self, template: dict, note: str = "") -> dict:
        """Save `template` (name, template, variables, system, ...) as the next version of its name."""
        return self._request("POST", "/api/prompts", json={**template, "note": note})

    def prompt_diff(self, name: str, a: int, b: int) -> dict:
        """What changed from version `a` to `b`: `diff` (unified) and the `fields` that differ."""
        return self._request("GET", f"/api/prompts/{quote(name, safe='')}/diff", params={"a": a, "b": b})

    def prompt_revert(self, name: str, version: int) -> dict:
        """Save version `version`'s content again as the newest version."""
        return self._request("POST", f"/api/prompts/{quote(name, safe='')}/revert", json={"version": version})

    def prompt_datasets(self) -> list[dict]:
        """The workspace datasets the few-shot builder can take examples from: `id`, `splits`, `fields`."""
        return self._request("GET", "/api/prompts/datasets")

    def prompt_fewshot(self, query: str, **params: Any) -> dict:
        """A few-shot prompt for `query` (params: examples or dataset/split, input_field, output_field,
        k, method, seed, instruction, model): `prompt`, `examples`, `tokens`, `tokenizer`."""
        return self._request("POST", "/api/prompts/fewshot", json={"query": query, **params})

    def prompt_ab_test(self, a: dict, b: dict, model: str, timeout: float = 900.0, **params: Any) -> dict:
        """Template `a` against `b` (`{"name", "version"}`) on labelled rows (params: items, text (JSONL)
        or dataset/split/limit; metric, max_tokens, endpoint), answered by the served `model`. Every row
        is asked twice, so this may take a while: a longer timeout than other calls."""
        return self._request("POST", "/api/prompts/ab-test", json={"a": a, "b": b, "model": model, **params},
                             timeout=timeout)
