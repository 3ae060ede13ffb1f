"""One model in full: its registry row, lineage graph, card, evaluations, its run's checkpoints,
MLflow versions, and whether this machine can serve it (GET /api/models/{id}, `playground models show`)."""

from __future__ import annotations

from training.registry import checkpoints, mlflow_sync, registry
from training.workspace import Workspace


def _evaluations(ws, model_id: str) -> list[dict]:
    """The model's latest score on each task (the leaderboard's cells)."""
    from evaluation import leaderboard, records

    cells = leaderboard.latest_rows(records.read_all(ws))
    return sorted(({"task": task, "suite": row.get("suite"), "metric": row.get("metric"), "score": row.get("score"),
                    "ci95": row.get("ci95"), "n": row.get("n"), "eval_id": row["eval_id"],
                    "evaluated_at": row.get("evaluated_at")}
                   for (model, task), row in cells.items() if model == model_id), key=lambda r: r["task"])


def model_detail(ws: Workspace, model_id: str, deployed: set[str] | frozenset = frozenset()) -> dict:
    """Everything the Models page and `playground models show` say about one model."""
    from training.registry import card

    folder = registry.require(ws, model_id)
    row = registry.model_row(ws, folder, deployed)
    evaluations = _evaluations(ws, model_id)
    graph = registry.lineage_graph(ws, model_id, deployed=deployed, evaluations=evaluations)
    run = row.get("run_id")
    ckpts = checkpoints.run_checkpoints(ws, run) if run and (ws.run(run) / "config.yaml").is_file() else []
    try:
        mlflow = mlflow_sync.registered(ws, model_id)
    except Exception as e:  # noqa: BLE001 - the registry is a mirror: show the model anyway
        mlflow = {"error": f"{type(e).__name__}: {e}"[:200]}
    return row | {"info": {k: v for k, v in registry.read_info(folder).items() if k != "config"},
                  "parameters": registry.count_parameters(folder), "evaluations": evaluations,
                  "lineage_graph": graph, "dot": registry.to_dot(graph), "children": graph["children"],
                  "checkpoints": ckpts, "card": str(card.build_card(ws, folder)),
                  "card_facts": card.card_facts(ws, folder), "mlflow": mlflow,
                  "serving": _serving(row)}


def _serving(row: dict) -> dict:
    """Whether vLLM on this machine can serve the model: a quantized variant records what its
    quantization found (training/registry/quantize.py), everything else can."""
    q = row.get("quantization") or {}
    if q and q.get("servable") is False:
        return {"servable": False, "reason": q.get("servable_reason") or "this vLLM build cannot serve it"}
    return {"servable": True, "reason": None}
