"""The model registry's calls (/api/models/..., /api/runs/{run}/checkpoints), mixed into
`ui.client.PlaygroundClient`; errors arrive as the same one-line `ApiError` (services/models_api.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def _q(name: str) -> str:
    return quote(name, safe="")


class ModelsClientMixin:
    """Calls of the Models page; needs the host class's `_request(method, path, **kwargs)`."""

    _request: Any

    def registry(self, kind: str | None = None) -> list[dict]:
        """Every model with its `kind`, `parent`, size and `deployed` (GET /api/models?kind=)."""
        return self._request("GET", "/api/models", params={"kind": kind} if kind else None)

    def model(self, model_id: str) -> dict:
        """One model in full: `lineage_graph` and `dot`, `card` (markdown), `evaluations`, `checkpoints`,
        `children`, `mlflow` versions and `serving` (whether this machine's vLLM can serve it)."""
        return self._request("GET", f"/api/models/{_q(model_id)}")

    def delete_model(self, model_id: str) -> dict:
        """Delete a model's folder (409 while it is deployed)."""
        return self._request("DELETE", f"/api/models/{_q(model_id)}")

    def model_diff(self, a: str, b: str) -> dict:
        """Per-layer relative weight change from `a` to `b` (model ids or `<run>@<step>`), and their scores."""
        return self._request("GET", "/api/models/diff", params={"a": a, "b": b})

    def quantize(self, model_id: str, method: str, new_id: str | None = None) -> dict:
        """Start a quantization job (int8 or int4): `job_id` and the variant's `model` id."""
        return self._request("POST", f"/api/models/{_q(model_id)}/quantize",
                             json={"method": method, **({"id": new_id} if new_id else {})})

    def import_model(self, *, path: str | None = None, hub: str | None = None, new_id: str | None = None) -> dict:
        """Import a model folder on the server (`path`, done at once) or a Hub name (`hub`, a job)."""
        body = {"path": path} if path else {"hub": hub}
        return self._request("POST", "/api/models/import", json=body | ({"id": new_id} if new_id else {}))

    def publish_model(self, model_id: str, repo_id: str, private: bool = True) -> dict:
        """Push the model and its card to the Hugging Face Hub (the server's HF_TOKEN)."""
        return self._request("POST", f"/api/models/{_q(model_id)}/publish",
                             json={"repo_id": repo_id, "private": private})

    def checkpoints(self, run: str) -> list[dict]:
        """A run's checkpoints: `name` (`<run>@<step>`), `step`, `val_loss`, `size_bytes`, `exported_as`."""
        return self._request("GET", f"/api/runs/{_q(run)}/checkpoints")

    def export_checkpoint(self, run: str, step: int, new_id: str | None = None) -> dict:
        """Export checkpoint `run@step` as a model; returns its `model` id."""
        return self._request("POST", f"/api/runs/{_q(run)}/checkpoints/{int(step)}/export",
                             json={"id": new_id} if new_id else {})
