"""The parts of `playground bench sft` (benchmarks/sft.py) that need no training: which model it
fine-tunes, how it times, and the figures it reports. The bench itself is run by hand."""

import json
import os
from dataclasses import asdict

import pytest

from benchmarks import sft as bench
from cluster.cli import main
from training.config import load_config
from training.errors import UserError
from training.posttrain.config import SFTConfig
from training.workspace import Workspace


def _model(ws: Workspace, name: str, mtime: float, *, lineage: bool = False, **model_changes) -> None:
    folder = ws.model(name)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    model = asdict(load_config(bench.DEMO_PRETRAIN).model) | model_changes
    info = {"run_id": name, "config": {"model": model}} | ({"lineage": {"kind": "sft"}} if lineage else {})
    (folder / "playground.json").write_text(json.dumps(info))
    os.utime(folder / "playground.json", (mtime, mtime))


def test_picks_the_newest_demo_export(tmp_path):
    ws = Workspace(tmp_path)
    _model(ws, "demo-old", 1_000)
    _model(ws, "demo-new", 2_000)
    _model(ws, "tuned", 3_000, lineage=True)        # a fine-tuned demo model: not a base
    _model(ws, "bigger", 4_000, n_layer=8)          # another shape
    _model(ws, "odd", 5_000, no_such_field=1)       # not a model config this code knows
    _model(ws, "bench-base-2400", 6_000)            # `--pretrain-steps 2400`'s base: not make demo's
    (ws.model("no-info")).mkdir()                   # no playground.json at all
    assert bench.pick_model(ws) == "demo-new"
    assert bench.pick_model(ws, "bigger") == "bigger"  # --model wins, whatever its shape
    with pytest.raises(UserError, match="--model: no model 'nope'"):
        bench.pick_model(ws, "nope")


def test_no_demo_export_is_one_line_and_exit_2(tmp_path, capsys):
    ws = Workspace(tmp_path)
    _model(ws, "tuned", 1_000, lineage=True)
    with pytest.raises(UserError, match="run `make demo` first"):
        bench.pick_model(ws)
    assert main(["--workspace", str(tmp_path / "empty"), "bench", "sft", "--skip-accuracy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no demo model in") and "make demo" in err and len(err.splitlines()) == 1
    assert main(["--workspace", str(tmp_path), "bench", "sft", "--timing-steps", "0"]) == 2


def test_timing_config_keeps_the_global_batch_and_whole_windows():
    cfg = bench.sft_config("demo-x")
    assert cfg.base.model == "demo-x" and cfg.tracking.mlflow is False and cfg.train.eval_prompts == 0
    one = bench.timing_config(cfg, 35)
    assert (one.train.log_interval, one.train.max_steps) == (10, 40)  # one window of warmup, 30 timed
    assert one.train.eval_examples == 0 and one.train.batch_size == cfg.train.batch_size
    two = bench.timing_config(cfg, 4, workers=2, threads=1)
    assert (two.train.log_interval, two.train.max_steps) == (4, 8)
    assert two.train.batch_size * 2 == cfg.train.batch_size and two.scale.threads_per_worker == 1
    assert cfg.train.max_steps == 240  # the config itself is left as it was (demo.yaml's)


def test_tokens_per_s_runs_from_the_first_to_the_last_log():
    assert bench.tokens_per_s([(10.0, 1000.0), (12.0, 3000.0), (14.0, 9000.0)]) == pytest.approx(2000.0)
    with pytest.raises(RuntimeError, match="two logged steps"):
        bench.tokens_per_s([(10.0, 1000.0)])


def _figures(accuracy, ray_2x1=1100.0):
    cfg = SFTConfig.model_validate({"base": {"model": "m"}, "method": "full", "train": {"lr": 2e-3, "batch_size": 32}})
    memory = {"full": {"peak_memory_mb": 900.0, "trainable_params": 4_000_000, "total_params": 4_000_000,
                       "s_per_step": 0.5},
              "lora": {"peak_memory_mb": 850.0, "trainable_params": 260_000, "total_params": 4_260_000,
                       "s_per_step": 0.4},
              "qlora": {"error": "method=qlora: bitsandbytes cannot run"}}
    timing = {"steps": 30, "log_interval": 10, "plain_before": 1000.0, "plain_after": 1200.0,
              "ray_1x2": 1045.0, "ray_2x1": ray_2x1}
    return bench.assemble(model="demo-1", cfg=cfg, steps=300, accuracy=accuracy, timing=timing, memory=memory,
                          host={"cpu": "x", "cores": 2, "gpu": None}, libs={"torch": "2"})


def test_figures_from_fake_measurements():
    results = {"model": "bench-sft",
               "base": {"heldout_template": 0.0, "heldout_entity": 0.02, "val": 0.01},
               "sft": {"heldout_template": 0.9, "heldout_entity": 0.76, "val": 0.95},
               "by_task": {"base": {"heldout_template": {"math": 0.0}, "val": {"math": 0.0}},
                           "sft": {"heldout_template": {"math": 1.0}, "heldout_entity": {"capital": 0.7}}}}
    f = _figures(results)
    assert f["base_heldout_accuracy"] == 0.01 and f["sft_heldout_accuracy"] == 0.83  # the mean of the two splits
    assert f["goal_sft_heldout_accuracy"] == 0.8 and f["meets_goal"] is True
    assert f["heldout_accuracy"]["sft"] == {"heldout_template": 0.9, "heldout_entity": 0.76}
    assert f["heldout_accuracy_by_task"]["base"] == {"heldout_template": {"math": 0.0}}  # val is not held out
    assert f["val_accuracy"] == {"base": 0.01, "sft": 0.95}
    assert f["tokens_per_s"] == {"plain_1x2": 1100.0, "ray_1x2": 1045.0, "ray_2x1": 1100.0}
    assert f["ray_vs_plain"] == 1.0 and f["ray_1x2_vs_plain"] == 0.95 and f["ray_2x1_vs_plain"] == 1.0
    assert f["goal_ray_vs_plain"] == 0.9 and f["meets_ray_vs_plain_goal"] is True
    assert f["peak_memory_mb"] == {"full": 900.0, "lora": 850.0}  # qlora failed: in methods, with its reason
    assert f["trainable_params"] == {"full": 4_000_000, "lora": 260_000}
    assert "error" in f["methods"]["qlora"]
    assert f["method"] == "full" and f["lr"] == 2e-3 and f["steps"] == 300
    json.dumps(f)  # one JSON line

    low = _figures({**results, "sft": {"heldout_template": 0.8, "heldout_entity": 0.7}}, ray_2x1=900.0)
    assert low["meets_goal"] is False and low["ray_vs_plain"] == 0.95  # the best Ray setup counts
    skipped = _figures(None, ray_2x1=None)
    assert skipped["sft_heldout_accuracy"] is None and skipped["meets_goal"] is None
    assert "ray_2x1" not in skipped["tokens_per_s"] and skipped["ray_vs_plain"] == 0.95


def test_pretrain_steps_reuses_a_finished_base_and_resumes_an_unfinished_run(tmp_path, monkeypatch):
    """--pretrain-steps N: the commands that make bench-base-N, and reuse once it exists. The
    `playground` processes are replaced by a fake that writes the export (the real ones pretrain
    for 15 minutes; `make demo` and tests/integration run the same commands for real)."""
    from benchmarks import sft_base

    ws = Workspace(tmp_path)
    cmds = sft_base.pretrain_commands(ws, 2400)
    assert [c[2:4] for c in cmds] == [["data", "prepare"], ["tokenizer", "train"], ["pretrain", "--config"],
                                      ["export", "bench-base-2400"]]
    assert all(c[:2] == ["--workspace", str(ws.root)] for c in cmds)
    assert "train.max_steps=2400" in cmds[2] and "run_name=bench-base-2400" in cmds[2]
    (ws.run("bench-base-2400")).mkdir(parents=True)
    (ws.run("bench-base-2400") / "config.yaml").write_text("{}")  # an earlier bench stopped halfway
    assert sft_base.pretrain_commands(ws, 2400)[2][2:4] == ["pretrain", "--resume"]

    calls = []

    def fake_call(cmd, cwd=None):
        calls.append(cmd[3:])
        if cmd[5] == "export":
            _model(ws, "bench-base-2400", 1_000)
            info = json.loads((ws.model("bench-base-2400") / "playground.json").read_text())
            (ws.model("bench-base-2400") / "playground.json").write_text(json.dumps(info | {"step": 2400}))
        return 0

    monkeypatch.setattr(sft_base.subprocess, "call", fake_call)
    assert sft_base.pretrained_base(ws, 2400) == "bench-base-2400" and len(calls) == 4
    assert sft_base.pretrained_base(ws, 2400) == "bench-base-2400" and len(calls) == 4  # reused: nothing ran
    assert sft_base.ready_base(ws, 1200) is None                                        # other steps: not this one
    assert bench.base_steps(ws, "bench-base-2400") == 2400

    monkeypatch.setattr(sft_base.subprocess, "call", lambda cmd, cwd=None: 1)
    with pytest.raises(SystemExit, match="failed"):
        sft_base.pretrained_base(ws, 600)


def test_pretrain_steps_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    for args in (["--pretrain-steps", "0"], ["--pretrain-steps", "100", "--model", "x"]):
        assert main(["--workspace", str(tmp_path), "bench", "sft", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1


def test_the_accuracy_run_of_a_bench_base_is_named_after_its_steps():
    # bench align takes the SFT model by id: a later run on another base must not replace it
    assert bench.accuracy_run_id(None) == "bench-sft"
    assert bench.accuracy_run_id(2400) == "bench-sft-2400" != bench.accuracy_run_id(4800)
