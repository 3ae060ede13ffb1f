"""Fine-tuning experiments: the config, the record and its table, /api/experiments, the
`experiment` job kind, `playground experiment`'s errors and the Fine-tune page's Experiments view.

No training here: tests/integration/test_posttrain.py runs a real two-variant experiment.
"""

import json
import math

import pytest
import yaml
from apihelp import assert_error
from fakejobs import FakeJobs, jobs_api
from fastapi.testclient import TestClient
from ui_stub import start_stub

from cluster.cli import main
from tests.ui_checks import open_page
from training.errors import UserError
from training.posttrain import experiment
from training.workspace import Workspace

BASE = "configs/sft/demo.yaml"


def load(**data):
    return experiment.load_experiment(None, data={"base": BASE, **data})


def test_variants_are_sft_configs_of_base_fixed_and_their_keys():
    _, configs, name = load(fixed={"train.max_steps": 20}, variants={
        "full": {"method": "full"}, "r4": {"method": "lora", "lora.r": 4, "train.lr": 1e-2}})
    assert name == "experiment" and list(configs) == ["full", "r4"]  # in the file's order
    assert (configs["full"].method, configs["full"].train.max_steps, configs["full"].train.lr) == ("full", 20, 5e-4)  # lr: demo.yaml's
    assert (configs["r4"].lora.r, configs["r4"].train.lr, configs["r4"].train.max_steps) == (4, 1e-2, 20)


def test_a_variant_may_replay_but_not_change_the_instructions():
    _, configs, _ = load(variants={"full": {"method": "full"}, "replay": {"data.replay": 0.25}})
    assert (configs["full"].data.replay, configs["replay"].data.replay) == (0.0, 0.25)
    assert configs["full"].data.model_dump(exclude={"replay"}) == configs["replay"].data.model_dump(exclude={"replay"})
    with pytest.raises(UserError, match="x: base, data and run_name are shared by all variants"):
        load(variants={"x": {"data.n_train": 10}})


@pytest.mark.parametrize("data, needle", [
    ({"variants": {}}, "variants: give at least one variant"),
    ({"variants": {"a b": {"method": "full"}}}, "variants: 'a b': variant names are letters"),
    ({"variants": {"x": {"base.model": "other"}}}, "x: base, data and run_name are shared by all variants"),
    ({"variants": {"x": {"lora.rank": 4}}}, "experiment: variants.x: lora.rank: unknown key"),
    ({"variants": {"x": {"method": "prefix"}}}, "experiment: variants.x: method: Input should be"),
    ({"variants": {"x": {}}, "fixed": {"train.lr": -1}}, "experiment: base+fixed: train.lr: Input should be greater"),
    ({"variants": {"x": {}}, "base": "nope.yaml"}, "base: config file not found: nope.yaml"),
])
def test_bad_experiments_are_one_line_errors_naming_the_key(data, needle):
    with pytest.raises(UserError) as e:
        experiment.load_experiment(None, data={"base": BASE, **data})
    assert needle in str(e.value) and "\n" not in str(e.value)


def _run_folder(ws, run_id, *, acc, memory, ppl):
    run = ws.run(run_id)
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "model": f"{run_id}-sft", "method": "lora", "trainable_params": 100, "total_params": 1000,
        "base": {"heldout_template": 0.0, "val": 0.0}, "sft": {"heldout_template": acc, "heldout_entity": acc / 2,
                                                               "val": 0.9}}))
    rows = [{"step": 2, "loss": 2.0, "tokens_per_s": 10.0, "memory_mb": memory / 2},  # start-up: not counted
            {"step": 4, "loss": 1.0, "tokens_per_s": 100.0, "memory_mb": memory},
            {"step": 4, "val_loss": 1.5, "perplexity": math.exp(1.5)},
            {"step": 6, "loss": 0.9, "tokens_per_s": 200.0, "memory_mb": memory - 1}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = {"world_facts": {"accuracy": 0.5}, "pretrain_val": {"perplexity": 2.0}}
    after = {"world_facts": {"accuracy": 0.3}, "pretrain_val": {"perplexity": ppl}}
    return experiment.variant_row(ws, run_id) | {"forgetting": experiment.forgetting_row(before, after)}


def _record(ws):
    rec = {"experiment_id": "rank-1", "name": "rank", "status": "FINISHED", "created_at": "2026-12-01T10:00:00",
           "finished_at": None, "base_model": "demo", "config": {}, "before": {
               "world_facts": {"accuracy": 0.5}, "pretrain_val": {"perplexity": 2.0}},
           "variants": {"r4": {"status": "FINISHED", "run_id": "rank-1-r4", "seconds": 12.0,
                               **_run_folder(ws, "rank-1-r4", acc=0.6, memory=500.0, ppl=3.0)},
                        "r64": {"status": "FAILED", "run_id": "rank-1-r64", "error": "lora.r: 64 > 32"}}}
    experiment.write_record(ws, rec)
    return rec


def test_a_variant_row_says_what_it_learned_cost_and_forgot(tmp_path):
    ws = Workspace(tmp_path)
    row = _run_folder(ws, "r", acc=0.6, memory=500.0, ppl=3.0)
    assert row["heldout_accuracy"] == pytest.approx(0.45)  # the held-out splits' mean; val is not held out
    assert row["peak_memory_mb"] == 500.0 and row["tokens_per_s"] == 150.0 and row["val_loss"] == 1.5
    assert row["forgetting"] == {"world_facts": 0.3, "world_facts_change": pytest.approx(-0.2),
                                 "pretrain_perplexity": 3.0, "pretrain_perplexity_ratio": 1.5}
    # a Hugging Face base with no pretraining text of ours: the facts only
    assert experiment.forgetting_row({"world_facts": {"accuracy": 0.1}, "pretrain_val": None},
                                     {"world_facts": {"accuracy": 0.2}, "pretrain_val": None}) == {
        "world_facts": 0.2, "world_facts_change": pytest.approx(0.1)}


def test_record_table_and_listing(tmp_path):
    ws = Workspace(tmp_path)
    rec = _record(ws)
    rows = experiment.table(rec)
    assert [(r["variant"], r["status"]) for r in rows] == [("r4", "FINISHED"), ("r64", "FAILED")]
    assert rows[0]["pretrain_perplexity_ratio"] == 1.5 and rows[1]["heldout_accuracy"] is None
    assert experiment.read_record(ws, "rank-1")["name"] == "rank"
    assert experiment.read_record(ws, "../rank-1") is None and experiment.read_record(ws, "nope") is None
    assert experiment.list_experiments(ws) == [{"experiment_id": "rank-1", "name": "rank", "status": "FINISHED",
                                                "created_at": "2026-12-01T10:00:00", "finished_at": None,
                                                "variants": ["r4", "r64"]}]
    assert not list((tmp_path / "experiments" / "rank-1").glob(".*tmp"))  # written aside, then renamed


def _api(tmp_path, monkeypatch):
    from services.experiments_api import router

    app = jobs_api(Workspace(tmp_path / "ws"), monkeypatch)
    app.include_router(router, prefix="/api")
    return app


def test_experiment_routes_and_jobs(tmp_path, monkeypatch):
    api = TestClient(_api(tmp_path, monkeypatch))
    assert api.get("/api/experiments").json() == []
    _record(Workspace(tmp_path / "ws"))
    assert api.get("/api/experiments").json()[0]["variants"] == ["r4", "r64"]
    got = api.get("/api/experiments/rank-1").json()
    assert got["variants"]["r64"]["status"] == "FAILED" and got["table"][0]["variant"] == "r4"
    assert_error(api.get("/api/experiments/nope"), 404, "experiment_id")

    out = api.post("/api/jobs", json={"kind": "experiment", "config": {
        "base": BASE, "variants": {"full": {"method": "full"}}}}).json()
    job = FakeJobs.jobs[out["job_id"]]
    assert job.entrypoint.endswith(f"-m cluster.cli experiment --config {out['config_file']}")
    assert experiment.load_experiment(out["config_file"])[1]["full"].method == "full"
    assert_error(api.post("/api/jobs", json={"kind": "experiment", "config": {
        "base": BASE, "variants": {"x": {"lora.r": 0}}}}), 400, "config.variants.x")


def test_experiment_cli_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": BASE, "variants": {"x": {"lora.rr": 2}}}))
    assert main(["--workspace", str(tmp_path / "ws"), "experiment", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "variants.x: lora.rr: unknown key" in err and "\n" not in err


def test_experiments_view(tmp_path, monkeypatch):
    server = start_stub(_api(tmp_path, monkeypatch))
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    try:
        at = open_page(None)
        at.query_params["ft_view"] = "Experiments"
        at.switch_page("pages/8_Fine-tune.py").run()
        assert not at.exception and "No experiments yet" in at.info[0].value
        _record(Workspace(tmp_path / "ws"))
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        table = at.dataframe[0].value
        assert list(table["variant"]) == ["r4", "r64"] and table["heldout_accuracy"][0] == pytest.approx(0.45)
        assert [e.value for e in at.error] == ["r64: lora.r: 64 > 32"]
        assert "before fine-tuning: world facts 0.50, pretraining perplexity 2.00" in at.caption[-1].value or any(
            "world facts 0.50" in c.value for c in at.caption)

        at.text_area(key="ft_exp_config").set_value(f"base: {BASE}\nvariants: {{x: {{lora.rr: 1}}}}\n").run()
        next(b for b in at.button if b.label == "Start experiment").click().run()
        assert any("variants.x: lora.rr: unknown key" in e.value for e in at.error) and FakeJobs.jobs == {}
        at.text_area(key="ft_exp_config").set_value(f"base: {BASE}\nvariants: {{full: {{method: full}}}}\n").run()
        next(b for b in at.button if b.label == "Start experiment").click().run()
        assert "Submitted job raysubmit_1" in at.success[0].value
    finally:
        server.stop()


def test_a_missing_base_model_is_one_line_before_anything_is_written(tmp_path):
    exp, configs, name = load(fixed={"base.model": str(tmp_path / "gone")}, variants={"full": {"method": "full"}})
    with pytest.raises(UserError, match="base.model: no model at .*gone"):
        experiment.run(exp, configs, Workspace(tmp_path), name=name)
    assert not (tmp_path / "experiments").exists()
