"""`playground models ...`: the model registry from a terminal (training/registry/).

    playground models list [--kind sft]            every model: kind, parent, size, served
    playground models show ID                      facts, lineage, evaluations, checkpoints
    playground models lineage ID [--dot]           the lineage graph (DOT for Graphviz)
    playground models card ID [--write]            the model card (README.md in the folder with --write)
    playground models checkpoints RUN              a run's checkpoints: step, val loss, size
    playground models export RUN STEP [--id ID]    any checkpoint as a model
    playground models diff A B                     per-layer weight change (models or RUN@STEP)
    playground models quantize ID --method int8|int4 [--id ID]
    playground models import PATH|OWNER/NAME [--id ID]
    playground models publish ID OWNER/NAME [--public]
    playground models delete ID [--yes]
    playground models sync                         bring MLflow's model registry in step
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_models_parsers(sub) -> None:
    models = sub.add_parser("models", help="the model registry: list, lineage, cards, checkpoints, diff, quantize, "
                                           "import, publish, delete").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = models.add_parser("list", help="every model of the workspace, newest first")
    p.add_argument("--kind", help="only this kind (pretrained, sweep, sft, reward, dpo, grpo, quantized, imported)")
    p.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    p.set_defaults(func=cmd_list)
    p = models.add_parser("show", help="one model: facts, lineage, evaluations, its run's checkpoints")
    p.add_argument("model")
    p.set_defaults(func=cmd_show)
    p = models.add_parser("lineage", help="the model's lineage, from the data to its deployments and evaluations")
    p.add_argument("model")
    p.add_argument("--dot", action="store_true", help="print Graphviz DOT (pipe it to `dot -Tsvg`)")
    p.set_defaults(func=cmd_lineage)
    p = models.add_parser("card", help="the model card (Hugging Face format) made from what the workspace knows")
    p.add_argument("model")
    p.add_argument("--write", action="store_true", help="write it to the model folder as README.md")
    p.set_defaults(func=cmd_card)
    p = models.add_parser("checkpoints", help="a run's checkpoints: step, validation loss, size, exported as")
    p.add_argument("run")
    p.set_defaults(func=cmd_checkpoints)
    p = models.add_parser("export", help="export any checkpoint of a run as a model")
    p.add_argument("run")
    p.add_argument("step", type=int)
    p.add_argument("--id", help="model id (default RUN-stepSTEP)")
    p.set_defaults(func=cmd_export)
    p = models.add_parser("diff", help="per-layer relative weight change between two models or checkpoints (RUN@STEP)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="the whole diff as JSON")
    p.set_defaults(func=cmd_diff)
    p = models.add_parser("quantize", help="an 8-bit (W8A8) or 4-bit (W4A16) variant vLLM serves (compressed-tensors)")
    p.add_argument("model")
    p.add_argument("--method", required=True, choices=["int8", "int4"])
    p.add_argument("--id", help="the variant's model id (default MODEL-METHOD)")
    p.set_defaults(func=cmd_quantize)
    p = models.add_parser("import", help="import a Hugging Face model: a local folder, or owner/name from the Hub")
    p.add_argument("source", help="a model folder, or a Hub name owner/name (needs the internet)")
    p.add_argument("--id", help="model id in the workspace (default: the folder or repo name)")
    p.set_defaults(func=cmd_import)
    p = models.add_parser("publish", help="push a model and its card to the Hugging Face Hub (token: $HF_TOKEN)")
    p.add_argument("model")
    p.add_argument("repo_id", help="owner/name on the Hub")
    p.add_argument("--public", action="store_true", help="a public repository (default: private)")
    p.set_defaults(func=cmd_publish)
    p = models.add_parser("delete", help="delete a model (refused while it is deployed)")
    p.add_argument("model")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_delete)
    p = models.add_parser("sync", help="bring MLflow's model registry in step with the workspace")
    p.set_defaults(func=cmd_sync)


def _ws(args):
    from training.workspace import Workspace

    return Workspace.resolve(args.workspace)


def _deployed() -> set[str]:
    """The models the local cluster serves ({} when no cluster runs)."""
    import socket

    from cluster.local import DASHBOARD, _serve_client

    host, port = DASHBOARD.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        details = _serve_client().get_serve_details()
    except Exception:  # noqa: BLE001 - no cluster, or no Serve on it: nothing is deployed
        return set()
    cfg = (details.get("applications", {}).get("llm") or {}).get("deployed_app_config") or {}
    return set((cfg.get("args") or {}).get("models", []))


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def _sync(ws, deployed=None) -> None:
    from training.registry import mlflow_sync

    out = mlflow_sync.safe_sync(ws, _deployed() if deployed is None else deployed)
    if "error" in out:
        print(f"note: MLflow's model registry was not updated: {out['error']}", file=sys.stderr)


def cmd_list(args) -> None:
    from training.registry import registry

    rows = registry.list_models(_ws(args), _deployed(), kind=args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no models yet (playground export RUN, playground sft, playground models import ...)")
        return
    print(f"{'model':<32}{'kind':<11}{'parent':<26}{'size':>11}  served")
    for r in rows:
        print(f"{r['id']:<32}{r['kind']:<11}{(r['parent'] or '-'):<26}{_mb(r['size_bytes']):>11}  "
              f"{'yes' if r['deployed'] else '-'}")


def cmd_show(args) -> None:
    from training.registry.detail import model_detail

    d = model_detail(_ws(args), args.model, _deployed())
    print(f"{d['id']}  ({d['kind']}, {d['architecture']}, {d['parameters'] or 0:,} parameters, {_mb(d['size_bytes'])})")
    chain = " <- ".join([d["id"], *d["lineage_graph"]["ancestors"]])
    print(f"lineage: {chain}")
    if d["run_id"]:
        print(f"run: {d['run_id']}  step {d['step']}  val_loss {d['val_loss']}")
    if d["children"]:
        print(f"made from it: {', '.join(d['children'])}")
    for e in d["evaluations"]:
        ci = f"  [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]" if e.get("ci95") else ""
        print(f"  eval {e['task']:<28}{e['score']:.3f}{ci}")
    for c in d["checkpoints"]:
        print(f"  checkpoint {c['name']:<30} val_loss {c['val_loss'] if c['val_loss'] is not None else '-'}  "
              f"{_mb(c['size_bytes'])}  {'exported as ' + ', '.join(c['exported_as']) if c['exported_as'] else ''}")
    if not d["serving"]["servable"]:
        print(f"not servable here: {d['serving']['reason']}")


def cmd_lineage(args) -> None:
    from training.registry import registry

    graph = registry.lineage_graph(_ws(args), args.model, deployed=_deployed())
    if args.dot:
        print(registry.to_dot(graph))
        return
    names = {n["id"]: n["label"].replace("\n", " ") for n in graph["nodes"]}
    for e in graph["edges"]:
        print(f"{names[e['source']]}  --{e['label']}-->  {names[e['target']]}")


def cmd_card(args) -> None:
    from training.registry import card, registry

    ws = _ws(args)
    folder = registry.require(ws, args.model)
    if args.write:
        print(f"wrote {card.write_card(ws, folder)}")
    else:
        print(str(card.build_card(ws, folder)))


def cmd_checkpoints(args) -> None:
    from training.registry import checkpoints

    rows = checkpoints.run_checkpoints(_ws(args), args.run)
    if not rows:
        print(f"run {args.run} kept no complete checkpoint")
    for c in rows:
        val = f"{c['val_loss']:.4f}" if c["val_loss"] is not None else "-"
        print(f"{c['name']:<36}{c['kind']:<9}val_loss {val:<9}{_mb(c['size_bytes']):>11}  "
              f"{'exported as ' + ', '.join(c['exported_as']) if c['exported_as'] else ''}")


def cmd_export(args) -> None:
    from training.registry import checkpoints

    ws = _ws(args)
    out = checkpoints.export_checkpoint(ws, args.run, args.step, args.id)
    _sync(ws)
    print(f"exported {args.run}@{args.step} as model {out['model']} ({out['path']})")


def cmd_diff(args) -> None:
    from training.registry import checkpoints
    from training.registry import diff as diff_lib

    ws = _ws(args)
    out = diff_lib.weight_diff(checkpoints.resolve_ref(ws, args.a, "a"), checkpoints.resolve_ref(ws, args.b, "b"))
    out["scores"] = diff_lib.score_diff(ws, args.a, args.b)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    def f(x) -> str:  # None: undefined (a tensor of zeros in A)
        return "-" if x is None else f"{x:.4f}"

    print(f"{'layer':<28}{'params':>12}{'rel. change':>14}{'cosine':>10}")
    for row in [*out["layers"], {**out["overall"], "layer": "all"}]:
        print(f"{row['layer']:<28}{row['params']:>12,}{f(row['relative_change']):>14}{f(row['cosine']):>10}")
    for s in out["scores"]:
        print(f"  {s['task']:<28}{s['a']:.3f} -> {s['b']:.3f}  ({s['delta']:+.3f})")


def cmd_quantize(args) -> None:
    from training.errors import UserError
    from training.registry import card, quantize, registry

    ws = _ws(args)
    src = registry.require(ws, args.model)
    out_id = registry.check_id(args.id or f"{args.model}-{args.method}", "id")
    if ws.model(out_id).exists():
        raise UserError(f"id: {out_id!r} already exists (choose another id, or delete it first)")
    facts = quantize.quantize(src, ws.model(out_id), args.method)
    card.try_write_card(ws, ws.model(out_id))
    _sync(ws)
    print(json.dumps({"model": out_id, **facts}))


def cmd_import(args) -> None:
    from training.registry import card, hub

    ws = _ws(args)
    source = Path(args.source).expanduser()
    if source.exists() or args.source.startswith((".", "/", "~")):
        folder = hub.import_folder(ws, source, args.id)
    else:
        def progress(done: int, total: int) -> None:
            print(f"progress: {done}/{total} bytes", flush=True)

        folder = hub.import_hub(ws, args.source, args.id, progress=progress)
    card.try_write_card(ws, folder)
    _sync(ws)
    print(f"imported {args.source} as model {folder.name} ({folder})")


def cmd_publish(args) -> None:
    from training.registry import hub

    url = hub.publish(_ws(args), args.model, args.repo_id, private=not args.public)
    print(f"published {args.model} to {url}")


def cmd_delete(args) -> None:
    from training.registry import registry

    ws = _ws(args)
    registry.require(ws, args.model)
    if not args.yes:
        answer = input(f"delete model {args.model} and its files? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted (pass --yes to skip the question)")
            return
    deployed = _deployed()
    out = registry.delete_model(ws, args.model, deployed)
    _sync(ws, deployed)
    kids = f"; models made from it keep their files: {', '.join(out['children'])}" if out["children"] else ""
    print(f"deleted {args.model}{kids}")


def cmd_sync(args) -> None:
    from training.registry import mlflow_sync

    out = mlflow_sync.sync(_ws(args), _deployed())
    print(json.dumps(out))

