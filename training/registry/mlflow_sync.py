"""MLflow's model registry, kept in step with the workspace's models.

The workspace folders are the models (vLLM and transformers read them); MLflow's registry is
where the rest of the MLOps world looks for them, so it mirrors them rather than holding a second
copy: one **registered model** per workspace model (same name), one **version** per state of its
weights (a model exported again, or replaced, gets a new version), each version pointing at the
folder and tagged with the model's kind, parent, run and step, and linked to the MLflow run that
trained it when there is one. The alias **deployed** marks the version being served; a model
deleted from the workspace has its registered model deleted too.

    from mlflow import MlflowClient
    MlflowClient("sqlite:///workspace/runs/mlflow.db").get_model_version_by_alias("demo-sft", "deployed")

This is what the sweep already does for its best trials (training/pretrain/sweep_record.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from training.registry.registry import list_models
from training.workspace import Workspace

ALIAS = "deployed"
DESCRIPTION = "A workspace model of the LLM Playground (workspace/models/{id}), kind {kind}."


def fingerprint(folder: Path) -> str:
    """Changes whenever the weights do: names, sizes and modification times of the weight files."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _client(ws: Workspace):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=ws.mlflow_uri(), registry_uri=ws.mlflow_uri())


def _mlflow_run(ws: Workspace, run_id: str | None) -> str | None:
    path = ws.run(run_id) / "mlflow_run_id" if run_id else None
    return path.read_text().strip() if path is not None and path.is_file() else None


def _tags(row: dict, fp: str) -> dict[str, str]:
    tags = {"kind": row["kind"], "fingerprint": fp, "path": row["path"]}
    for key in ("parent", "run_id", "step", "architecture"):
        if row.get(key) is not None:
            tags[key] = str(row[key])
    if row.get("quantization"):
        tags["quantization"] = str(row["quantization"].get("method"))
    return tags


def sync(ws: Workspace, deployed: set[str] | frozenset = frozenset()) -> dict:
    """Make MLflow's registry match the workspace: register new models, add a version for changed
    weights, move the `deployed` alias, delete the registered models of deleted workspace models
    (only those this module made: tagged `playground=1`).

    Returns `{"registered": [...], "new_versions": [...], "deleted": [...], "deployed": {id: version}}`.
    """
    import mlflow

    client = _client(ws)
    rows = {r["id"]: r for r in list_models(ws, deployed)}
    out = {"registered": [], "new_versions": [], "deleted": [], "deployed": {}}
    ours = {m.name: m for m in client.search_registered_models(filter_string="tags.playground = '1'",
                                                               max_results=1000)}
    for model_id, row in rows.items():
        fp = fingerprint(Path(row["path"]))
        if model_id not in ours:
            try:
                client.create_registered_model(model_id, tags={"playground": "1"},
                                               description=DESCRIPTION.format(id=model_id, kind=row["kind"]))
                out["registered"].append(model_id)
            except mlflow.exceptions.MlflowException:  # a name someone else registered: leave it alone
                continue
        versions = client.search_model_versions(f"name = '{model_id}'", max_results=1000)
        current = next((v for v in versions if (v.tags or {}).get("fingerprint") == fp), None)
        if current is None:
            current = client.create_model_version(model_id, source=row["path"], tags=_tags(row, fp),
                                                  run_id=_mlflow_run(ws, row.get("run_id")))
            out["new_versions"].append(f"{model_id}/{current.version}")
        aliases = client.get_registered_model(model_id).aliases or {}
        if row["deployed"]:
            if str(aliases.get(ALIAS)) != str(current.version):
                client.set_registered_model_alias(model_id, ALIAS, current.version)
            out["deployed"][model_id] = str(current.version)
        elif ALIAS in aliases:
            client.delete_registered_model_alias(model_id, ALIAS)
    for name in ours:
        if name not in rows:
            client.delete_registered_model(name)
            out["deleted"].append(name)
    return out


def registered(ws: Workspace, model_id: str) -> dict | None:
    """What MLflow holds for one model: `{"name", "versions": [{"version", "kind", "created"}], "aliases"}`,
    or None when it is not registered (yet)."""
    import mlflow

    client = _client(ws)
    try:
        model = client.get_registered_model(model_id)
    except mlflow.exceptions.MlflowException:
        return None
    versions = client.search_model_versions(f"name = '{model_id}'", max_results=1000)
    return {"name": model.name, "aliases": {k: str(v) for k, v in (model.aliases or {}).items()},
            "versions": sorted(({"version": int(v.version), "kind": (v.tags or {}).get("kind"),
                                 "created": v.creation_timestamp, "run_id": v.run_id} for v in versions),
                               key=lambda v: v["version"])}


def safe_sync(ws: Workspace, deployed: set[str] | frozenset = frozenset()) -> dict:
    """`sync`, with a registry error reported rather than raised: the workspace is the source of truth."""
    try:
        return sync(ws, deployed)
    except Exception as e:  # noqa: BLE001 - MLflow down or its store locked: the models are unaffected
        return {"error": f"{type(e).__name__}: {e}"[:300]}
