"""Two Ray nodes on one machine: pretraining on two Ray Train workers, one per node, then the
playground API served from the second node. What tests/integration/test_multinode.py runs.

    python tests/integration/multinode_job.py --workspace DIR --config TINY.yaml

`ray.cluster_utils.Cluster` starts a real head (GCS, raylet, dashboard) and a second raylet,
each with 1 logical CPU and a custom resource of its own (`head_node`, `second_node`), so
Ray's scheduler sees two nodes exactly as on two machines: the two Train workers (1 CPU
each) cannot share a node, and Serve places the API's replicas where `second_node` is. The
run's checkpoint goes to the workspace, which both "nodes" see at the same path (on a real
cluster: the shared volume of docs/concepts/cluster.md).

The Serve part deploys the `playground` application of cluster/deploy/kuberay/rayservice.yaml
(its serveConfigV2, so what Kubernetes would deploy is what runs here) through the dashboard's
REST API (what `serve deploy` and KubeRay use), with its deployments pinned to `second_node`.

It runs in a process of its own (a process holds one Ray connection; the integration session's
is taken) and prints one JSON line last: the facts the test asserts on. It shuts Serve, Ray and
both nodes down however it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RAYSERVICE = ROOT / "cluster" / "deploy" / "kuberay" / "rayservice.yaml"
PIN = {"num_cpus": 0, "resources": {"second_node": 0.01}}  # 0 CPUs: the Train workers hold both


def serve_config(rayservice: Path, workspace: str, dashboard: str, port: int) -> dict:
    """The manifest's `playground` application, on loopback, this workspace and this dashboard,
    with both of its deployments pinned to the second node."""
    import yaml

    manifest = yaml.safe_load(rayservice.read_text())
    cfg = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    app = next(a for a in cfg["applications"] if a["name"] == "playground")
    app["args"].update(workspace=workspace, dashboard_url=dashboard)
    app["deployments"] = [{"name": name, "ray_actor_options": PIN} for name in ("PlaygroundAPI", "Inspector")]
    return {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port}, "applications": [app]}


def train(cfg_path: str, workspace: str) -> dict:
    """The project's pretraining recipe, joined to the running cluster; where its workers ran."""
    from ray.util.state import list_actors

    from training.config import load_config
    from training.model import checkpoint
    from training.pretrain import pretrain
    from training.workspace import Workspace

    ws = Workspace.resolve(workspace)
    result = pretrain.run(load_config(cfg_path), ws, run_id="multinode")
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}")
    latest = checkpoint.latest(ws.run("multinode"))
    state = checkpoint.load(latest)
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    return {"step": state["step"], "world_size": len(state["rng_states"]),
            "num_workers": state["config"]["scale"]["num_workers"], "checkpoint": str(latest),
            "loss": (result.metrics or {}).get("loss"), "train_nodes": sorted(a.node_id for a in workers)}


def serve_api(workspace: str, dashboard: str) -> dict:
    """Deploy the API from the RayService manifest onto the second node; ask it over HTTP."""
    import httpx
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from benchmarks.serve_http import free_port

    port = free_port()
    client = ServeSubmissionClient(dashboard)
    client.deploy_applications(serve_config(RAYSERVICE, workspace, dashboard, port))
    base, deadline, health = f"http://127.0.0.1:{port}/api", time.time() + 120, None
    while time.time() < deadline:
        try:
            r = httpx.get(f"{base}/health", timeout=10)
            if r.status_code == 200:
                health = r.json()
                break
        except httpx.HTTPError:  # the proxy is not up yet
            pass
        app = client.get_serve_details().get("applications", {}).get("playground", {})
        if app.get("status") == "DEPLOY_FAILED":
            raise RuntimeError(f"the playground app failed to deploy: {app.get('message', '')[-1000:]}")
        time.sleep(1)
    if health is None:
        raise TimeoutError("GET /api/health did not answer 200 within 120 s")
    runs = httpx.get(f"{base}/runs", timeout=30).json()
    details = client.get_serve_details()["applications"]["playground"]["deployments"]
    replicas = {name: sorted(r["node_id"] for r in d["replicas"]) for name, d in details.items()}
    return {"health": health["status"], "health_workspace": health["workspace"],
            "runs": [r["run"] for r in runs], "replica_nodes": replicas}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="the shared workspace (a tmp folder in the test)")
    parser.add_argument("--config", required=True, help="a pretraining YAML with scale.num_workers: 2")
    args = parser.parse_args()
    os.environ["PLAYGROUND_WORKSPACE"] = args.workspace  # every node's workers inherit it

    from services.serve_env import serve_env

    os.environ.update(serve_env())  # Serve's HTTP path as `playground up` runs it (HAProxy)
    # A replica behind HAProxy stays reachable 30 s after it is told to stop, for load balancers
    # to notice; nothing balances here, and serve.shutdown() would wait all of it.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from benchmarks.serve_http import free_port

    t0, timings, out = time.time(), {}, {}
    dashboard_port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"head_node": 1}, "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
    try:
        second = cluster.add_node(num_cpus=1, resources={"second_node": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        out["nodes"] = {"head": cluster.head_node.node_id, "second": second.node_id}
        timings["cluster_s"] = round(time.time() - t0, 1)
        out.update(train(args.config, args.workspace))
        timings["train_s"] = round(time.time() - t0 - timings["cluster_s"], 1)
        out.update(serve_api(args.workspace, dashboard))
        timings["serve_s"] = round(time.time() - t0 - timings["cluster_s"] - timings["train_s"], 1)
    finally:
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        cluster.shutdown()
    out["timings"] = {**timings, "total_s": round(time.time() - t0, 1)}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
