"""`playground up | down | status`: the local cluster, its Serve applications and the UI.

    up      Ray head (cluster/start.sh) -> configs/serve/local.yaml -> Streamlit on 127.0.0.1:8501
    down    the UI, the Serve applications, then Ray
    status  the cluster, each deployment and the models
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from services.schemas import MLFLOW_UI
from services.serve_env import serve_env
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

DASHBOARD = "http://127.0.0.1:8265"
UI_PORT = 8501
SERVE_CONFIG = PROJECT_ROOT / "configs" / "serve" / "local.yaml"


def _serve_client():
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    return ServeSubmissionClient(DASHBOARD)


# The venv's own `ray` CLI, so `playground up` works without activating the venv.
RAY = str(Path(sys.executable).parent / "ray")


def _token_mode() -> None:
    """Ray 2.60 clusters require a token (~/.ray/auth_token); clients send it only in token
    mode. We keep the check on, and say so to every client and process that up/down/status
    start. Set when a command runs, not on import: Ray reads the mode once per process, so a
    process that merely imports this module and starts its own Ray must keep its mode."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def join_running_cluster() -> str | None:
    """Point this process at the Ray cluster `playground up` (or `ray start`) left running here, if it
    answers: RAY_ADDRESS, and the token mode such a cluster checks. Ray reads the mode when it is
    imported, so call this before anything imports ray. Returns the address, or None (none running,
    or RAY_ADDRESS already set)."""
    import socket
    import tempfile

    if os.environ.get("RAY_ADDRESS"):
        return None
    try:
        marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        host, port = marker.read_text().strip().rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=1).close()
    except (OSError, ValueError):
        return None
    _token_mode()
    os.environ["RAY_ADDRESS"] = f"{host}:{port}"
    return os.environ["RAY_ADDRESS"]


def _env(ws: Workspace) -> dict:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **serve_env(), "PATH": path, "PLAYGROUND_WORKSPACE": str(ws.root)}


def _ray_running() -> bool:
    return subprocess.run([RAY, "status", "--address", "127.0.0.1:6379"], capture_output=True,
                          check=False).returncode == 0


def serve_config(ws: Workspace, models: list[str]) -> dict:
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    for app in cfg["applications"]:
        app["args"]["workspace"] = str(ws.root)
        if app["name"] == "llm" and models:
            app["args"]["models"] = models
    return cfg


def up(ws: Workspace, models: list[str], timeout: float = 600) -> None:
    _token_mode()
    for m in models:
        if not (ws.model(m) / "config.json").is_file():
            raise UserError(f"no exported model '{m}' in {ws.models} (run `playground export RUN` first)")
    env = _env(ws)
    if not _ray_running():
        print("starting Ray ...", flush=True)
        _start_ray(env)
    cfg = serve_config(ws, models)
    print(f"deploying {SERVE_CONFIG.relative_to(PROJECT_ROOT)} (models: {', '.join(models) or 'none yet'}) ...",
          flush=True)
    _serve_client().deploy_applications(cfg)
    _wait_running(timeout)
    _start_ui(ws, env)
    port = cfg["http_options"]["port"]
    mlflow_ui = next((a["args"].get("mlflow_url") for a in cfg["applications"] if a["name"] == "playground"),
                     None) or MLFLOW_UI
    print(f"\nRay dashboard   {DASHBOARD}\nOpenAI API      http://127.0.0.1:{port}/v1  (docs of the playground API: "
          f"http://127.0.0.1:{port}/api/docs)\nUI              http://127.0.0.1:{UI_PORT}\n"
          f"MLflow          {ws.mlflow_uri()}; its UI on {mlflow_ui} once `playground mlflow` runs")


def _start_ray(env: dict) -> None:
    """Run cluster/start.sh; when Ray refuses to start, say why in one line (usually a port in use)."""
    done = subprocess.run([str(PROJECT_ROOT / "cluster" / "start.sh")], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        raise UserError(f"Ray did not start (cluster/start.sh exited {done.returncode}): {reason[:300]} "
                        "-- is a port in use or a cluster left running? see `ray status`, `ray stop`")


def _wait_running(timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        apps = _serve_client().get_serve_details().get("applications", {})
        states = {name: a["status"] for name, a in apps.items()}
        failed = {n: apps[n].get("message", "")[-400:] for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise SystemExit(f"Serve application failed to deploy: {failed}")
        if states and all(s == "RUNNING" for s in states.values()):
            return
        time.sleep(2)
    raise SystemExit(f"Serve applications not running after {timeout:.0f} s: {states}")


def _ui_pid_file(ws: Workspace) -> Path:
    return ws.root / "ui.pid"


def _start_ui(ws: Workspace, env: dict) -> None:
    pid_file = _ui_pid_file(ws)
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        return
    ws.root.mkdir(parents=True, exist_ok=True)
    log = open(ws.root / "ui.log", "ab")  # noqa: SIM115  (the UI writes to it for as long as it runs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "ui" / "Home.py"),
         "--server.address", "127.0.0.1", "--server.port", str(UI_PORT), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        env={**env, "PLAYGROUND_URL": "http://127.0.0.1:8000"}, stdout=log, stderr=log, start_new_session=True)
    pid_file.write_text(str(proc.pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def down(ws: Workspace) -> None:
    _token_mode()
    pid_file = _ui_pid_file(ws)
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
        pid_file.unlink()
        print("UI stopped")
    if _ray_running():
        try:
            _serve_client().delete_applications()
        except Exception as e:  # noqa: BLE001 - Serve may not be running; Ray stops anyway
            print(f"(serve: {e})")
        subprocess.run([RAY, "stop"], check=False, capture_output=True)
        print("Serve and Ray stopped")
    else:
        print("Ray was not running")


def status(ws: Workspace) -> int:
    _token_mode()
    if not _ray_running():
        print("Ray: not running (start everything with `playground up`)")
        return 1
    print(f"Ray: running, dashboard {DASHBOARD}")
    details = _serve_client().get_serve_details()
    deployed = []
    for name, app in details.get("applications", {}).items():
        print(f"  app {name:<12} {app['status']}")
        for dname, d in app.get("deployments", {}).items():
            print(f"    {dname:<40} {d['status']}")
        cfg = app.get("deployed_app_config") or {}
        deployed += (cfg.get("args") or {}).get("models", []) if name == "llm" else []
    models = sorted(p.name for p in ws.models.iterdir() if (p / "config.json").is_file()) if ws.models.is_dir() else []
    print("models:" + ("" if models else " none exported yet"))
    for m in models:
        print(f"  {m:<40} {'serving' if m in deployed else '-'}")
    pid_file = _ui_pid_file(ws)
    ui = pid_file.is_file() and _alive(int(pid_file.read_text()))
    print(f"UI: {f'http://127.0.0.1:{UI_PORT}' if ui else 'not running'}")
    return 0
