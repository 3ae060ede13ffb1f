"""The cluster manifests in cluster/deploy/ parse, have what their tools need, and cannot drift
from the project: the Serve configs against configs/serve/local.yaml, Ray's own schema and the
project's argument schemas; the RayJobs against the CLI and configs/; the launcher against Ray's
cluster-config schema. No cluster, no network.
"""

import copy
import importlib
import shlex
from pathlib import Path

import pytest
import ray
import yaml
from ray.serve.schema import DeploymentSchema, HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

from cluster.cli import build_parser
from services.schemas import APIAppArgs, LLMAppArgs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "cluster" / "deploy"
KUBERAY = DEPLOY / "kuberay"
LOCAL_SERVE = ROOT / "configs" / "serve" / "local.yaml"
PROJECT_DIR = "/home/ray/llm-playground"   # where the image (raycluster.yaml's header) puts the project
LAUNCHER_PROJECT_DIR = "~/llm-playground"  # where ray-cluster.yaml's file_mounts put it
RAY_KINDS = {"RayCluster", "RayJob", "RayService"}
ARG_SCHEMAS = {"services.app:build_llm_app": LLMAppArgs, "services.app:build_api_app": APIAppArgs}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kuberay(kind: str) -> list[dict]:
    return [d for f in sorted(KUBERAY.glob("*.yaml")) for d in docs(f) if d["kind"] == kind]


def cluster_specs() -> list[tuple[str, dict]]:
    """(where, RayClusterSpec) of every Ray cluster the manifests describe."""
    specs = [(f"RayCluster {d['metadata']['name']}", d["spec"]) for d in kuberay("RayCluster")]
    specs += [(f"RayService {d['metadata']['name']}", d["spec"]["rayClusterConfig"]) for d in kuberay("RayService")]
    specs += [(f"RayJob {d['metadata']['name']}", d["spec"]["rayClusterSpec"]) for d in kuberay("RayJob")
              if "rayClusterSpec" in d["spec"]]
    return specs


def pods(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def launcher() -> dict:
    return yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())


def serve_configs() -> list[tuple[str, dict]]:
    """(where, Serve config) of every Serve config a cluster deploys."""
    out = [("cluster/deploy/serve.yaml", yaml.safe_load((DEPLOY / "serve.yaml").read_text()))]
    out += [(f"RayService {d['metadata']['name']}", yaml.safe_load(d["spec"]["serveConfigV2"]))
            for d in kuberay("RayService")]
    return out


# --------------------------------------------------------------------------- every file


def test_every_manifest_parses_and_names_its_kind():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "ray-cluster.yaml", "serve.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob-pretrain.yaml",
        "kuberay/rayjob-sft.yaml", "kuberay/rayservice.yaml"}
    kinds = set()
    for f in KUBERAY.glob("*.yaml"):
        for d in docs(f):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(d), f
            assert d["apiVersion"] == ("ray.io/v1" if d["kind"] in RAY_KINDS else "v1"), (f, d["kind"])
            kinds.add(d["kind"])
    assert kinds == RAY_KINDS | {"PersistentVolumeClaim"}


# --------------------------------------------------------------------------- KubeRay clusters


def test_every_kuberay_cluster_runs_this_ray_with_token_auth_and_named_head_ports():
    assert cluster_specs()
    for where, spec in cluster_specs():
        assert spec["rayVersion"] == ray.__version__, where  # the image must carry pyproject's Ray
        assert spec["authOptions"]["mode"] == "token", where
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        ports = {p["containerPort"]: p["name"] for p in head["ports"]}
        assert ports[6379] == "gcs-server" and ports[8265] == "dashboard" and ports[8000] == "serve", where
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (where, group["groupName"])
        for pod in pods(spec):
            for c in pod["containers"]:
                assert c["resources"]["requests"] and c["resources"]["limits"], (where, c["name"])


def test_every_ray_pod_mounts_the_shared_workspace_at_the_same_path():
    (pvc,) = [d for d in docs(KUBERAY / "raycluster.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod, on any node, reads and writes it
    paths = set()
    for where, spec in cluster_specs():
        for pod in pods(spec):
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                      if "persistentVolumeClaim" in v}
            for c in pod["containers"]:
                workspace = env_of(c)["PLAYGROUND_WORKSPACE"]
                mounts = [m for m in c["volumeMounts"] if claims.get(m["name"]) == pvc["metadata"]["name"]]
                assert any(Path(workspace).is_relative_to(m["mountPath"]) for m in mounts), (where, c["name"])
                assert env_of(c)["RAY_SERVE_ENABLE_HA_PROXY"] == "1", (where, c["name"])  # as cluster/start.sh
                paths.add(workspace)
    assert len(paths) == 1, paths


# --------------------------------------------------------------------------- Serve configs


def test_serve_configs_validate_with_rays_schema_and_know_every_key():
    """ServeDeploySchema is what `serve deploy` and KubeRay's dashboard call accept; it ignores
    unknown keys, so a misspelt one is checked against its fields here."""
    def unknown(data: dict, schema) -> set:
        return set(data) - set(schema.model_fields)

    for where, cfg in serve_configs():
        ServeDeploySchema.model_validate(cfg)
        assert not unknown(cfg, ServeDeploySchema), where
        assert not unknown(cfg["http_options"], HTTPOptionsSchema), where
        for app in cfg["applications"]:
            assert not unknown(app, ServeApplicationSchema), (where, app["name"])
            for d in app.get("deployments", []):
                assert not unknown(d, DeploymentSchema), (where, app["name"], d["name"])


def test_serve_configs_have_the_local_applications_with_valid_args():
    local = yaml.safe_load(LOCAL_SERVE.read_text())
    shape = [(a["name"], a["import_path"], a["route_prefix"]) for a in local["applications"]]
    workspace = {w for _, spec in cluster_specs() for pod in pods(spec) for c in pod["containers"]
                 for w in [env_of(c)["PLAYGROUND_WORKSPACE"]]}
    for where, cfg in serve_configs():
        assert [(a["name"], a["import_path"], a["route_prefix"]) for a in cfg["applications"]] == shape, where
        assert cfg["http_options"]["host"] == "0.0.0.0" and cfg["http_options"]["port"] == local["http_options"]["port"]
        for app, local_app in zip(cfg["applications"], local["applications"]):
            # The project's own argument schemas (extra="forbid"): a misspelt arg fails here.
            ARG_SCHEMAS[app["import_path"]].model_validate(app["args"])
            assert set(local_app["args"]) <= set(app["args"]), (where, app["name"])
            assert {app["args"]["workspace"]} == workspace, (where, app["name"])


@pytest.mark.parametrize("import_path", sorted({a["import_path"] for _, cfg in serve_configs()
                                                for a in cfg["applications"]}))
def test_every_import_path_resolves_to_an_app_builder(import_path):
    module, name = import_path.split(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_deployment_overrides_name_deployments_that_exist():
    from services.api import PlaygroundAPI
    from services.inspector import Inspector

    names = {"services.app:build_api_app": {PlaygroundAPI.name, Inspector.name}}
    for where, cfg in serve_configs():
        for app in cfg["applications"]:
            for d in app.get("deployments", []):
                assert d["name"] in names.get(app["import_path"], set()), (where, app["name"], d["name"])


# --------------------------------------------------------------------------- RayJobs


def playground_argv(entrypoint: str) -> list[str]:
    """`playground ARGS...` -> ARGS, with the image's project folder turned into this checkout.

    One plain command: KubeRay's submitter pastes the entrypoint into a shell line
    (`ray job submit ... -- ENTRYPOINT ; fi ; ray job logs ...`), where `&&` or `;` would
    run the rest in the submitter pod instead of as the Ray job."""
    assert not set("&;|<>`$") & set(entrypoint), entrypoint
    argv = shlex.split(entrypoint)
    assert argv[0] == "playground", entrypoint  # pyproject's [project.scripts] entry
    return [str(ROOT / a.removeprefix(PROJECT_DIR + "/")) if a.startswith(PROJECT_DIR + "/") else a
            for a in argv[1:]]


@pytest.mark.parametrize("job", kuberay("RayJob"), ids=lambda d: d["metadata"]["name"])
def test_rayjob_entrypoints_are_cli_commands_on_configs_that_exist(job):
    from cluster.cli_posttrain import sft_config
    from training.config import load_config

    assert f"COPY --chown=ray . {PROJECT_DIR}" in (KUBERAY / "raycluster.yaml").read_text()  # the image's recipe
    args = build_parser().parse_args(playground_argv(job["spec"]["entrypoint"]))
    assert args.command in {"pretrain", "sft"}
    assert Path(args.config).is_relative_to(ROOT / "configs") and Path(args.config).is_file(), args.config
    if args.command == "pretrain":
        load_config(args.config, args.overrides)  # with its overrides, as the job will
    else:
        sft_config(args)
    names = {d["metadata"]["name"] for d in kuberay("RayCluster")}
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] in names


# --------------------------------------------------------------------------- cluster launcher


def test_launcher_config_has_what_ray_up_needs_and_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = launcher()
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type",
                "head_start_ray_commands", "worker_start_ray_commands"):
        assert cfg.get(key), key
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert any(t != cfg["head_node_type"] for t in cfg["available_node_types"])  # a worker type
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` runs first
    assert "--port=6379" in " ".join(cfg["head_start_ray_commands"])
    assert "$RAY_HEAD_IP:6379" in " ".join(cfg["worker_start_ray_commands"])


def test_launcher_installs_this_project_and_deploys_the_cluster_serve_config():
    import tomllib

    cfg = launcher()
    assert cfg["file_mounts"][LAUNCHER_PROJECT_DIR] == "."  # `ray up` from the repository root
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = [c for c in cfg["head_setup_commands"] + cfg["worker_setup_commands"] if "pip install" in c]
    assert any('llm-playground[cpu]"' in c for c in installs) and "cpu" in extras
    env = " ".join(cfg["setup_commands"])
    (_, serve) = serve_configs()[0]
    workspace = serve["applications"][0]["args"]["workspace"]
    assert f"PLAYGROUND_WORKSPACE={workspace} " in env and "RAY_AUTH_MODE=token" in env
    deploy = [c for c in cfg["head_start_ray_commands"] if "serve deploy" in c]
    assert deploy, "the head does not deploy the Serve applications"
    path = shlex.split(deploy[0].split("serve deploy", 1)[1])[0]
    assert path.startswith(LAUNCHER_PROJECT_DIR + "/")
    assert (ROOT / path.removeprefix(LAUNCHER_PROJECT_DIR + "/")) == DEPLOY / "serve.yaml"
