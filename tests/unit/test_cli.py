"""The `playground` command: user mistakes are one line on stderr and exit code 2,
and leave nothing half-written. (In-process: these never reach Ray.)"""

import json
from pathlib import Path

import pytest
import torch

from cluster.cli import main
from training.model import checkpoint
from training.model.transformer import ModelConfig, Transformer

TINY = """\
# tiny test run
#   playground pretrain --config tiny.yaml
data:
  sources: [synthetic]
  synthetic_chars: 40000
tokenizer:
  vocab_size: 300
model:
  vocab_size: 320
  block_size: 32
  n_layer: 2
  n_head: 2
  n_embd: 32
train:
  max_steps: 4
  batch_size: 4
  precision: fp32
"""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_WORKSPACE", str(tmp_path / "ws"))
    (tmp_path / "tiny.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ws"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, fragment):
    assert code == 2, err
    assert fragment in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err


def test_unknown_config_key(ws, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "train.lerning_rate=1")
    assert_user_error(code, err, "train.lerning_rate: unknown key")


def test_gpu_only_strategy_on_cpu(ws, capsys):
    """DeepSpeed needs GPUs: refused while checking the config, before Ray or any data work."""
    nano = Path(__file__).resolve().parents[2] / "configs/pretrain/nano.yaml"
    code, _, err = run_cli(capsys, "pretrain", "--config", str(nano), "scale.strategy=deepspeed_zero2")
    assert_user_error(code, err, "scale.strategy=deepspeed_zero2 needs GPUs (scale.use_gpu=true); on CPU use ddp")
    assert not ws.exists()


def test_missing_config_file(ws, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--config", "nope.yaml")
    assert_user_error(code, err, "config file not found")


def test_missing_data_file(ws, capsys):
    code, _, err = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml", "data.sources=[missing.txt]")
    assert_user_error(code, err, "missing.txt")
    assert not any((ws / "datasets").glob("*")) if (ws / "datasets").exists() else True


def test_empty_data_file(ws, capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    code, _, err = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml", "data.sources=[empty.txt]")
    assert_user_error(code, err, "no text")
    leftovers = list((ws / "datasets").rglob("*")) if (ws / "datasets").exists() else []
    assert not [p for p in leftovers if p.is_file()], leftovers


def test_vocab_mismatch(ws, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "model.vocab_size=100")
    assert_user_error(code, err, "model.vocab_size=100 is smaller than the tokenizer's vocabulary")
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


def test_resume_without_checkpoint(ws, capsys):
    (ws / "runs" / "empty-run").mkdir(parents=True)
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "--resume", "empty-run")
    assert_user_error(code, err, "cannot resume: no checkpoint")


def _fake_run(ws: Path, name="r1", tokenizer_dir="/nonexistent") -> Path:
    """A run folder with one real checkpoint, written by the project's own save()."""
    from training.config import load_config

    cfg = load_config(Path("tiny.yaml"))
    model = Transformer(cfg.model)
    opt = torch.optim.AdamW(model.parameters())
    ckpt = ws / "runs" / name / "checkpoint_000004"
    checkpoint.save(ckpt, model=model, optimizer=opt, step=4, config=cfg.model_dump(mode="json"),
                    rng_states=[torch.get_rng_state()], meta={"run_id": name, "tokenizer_dir": tokenizer_dir})
    (ws / "runs" / name / "config.yaml").write_text("x: 1\n")
    return ckpt


def test_corrupt_checkpoint(ws, capsys):
    ckpt = _fake_run(ws)
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    for argv in (["export", "r1"], ["sample", "r1"]):
        code, _, err = run_cli(capsys, *argv)
        assert_user_error(code, err, "corrupt checkpoint")
    # The run's only checkpoint is incomplete, so there is nothing to resume from.
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "--resume", "r1")
    assert_user_error(code, err, "cannot resume: corrupt checkpoint")
    assert not (ws / "models").exists()


def test_export_and_sample_unknown_run(ws, capsys):
    code, _, err = run_cli(capsys, "export", "no-such-run")
    assert_user_error(code, err, "no run or checkpoint named 'no-such-run'")


def test_existing_run_needs_resume(ws, capsys):
    _fake_run(ws, "taken")
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "run_name=taken")
    assert_user_error(code, err, "already exists")


def test_dry_run_prints_breakdown(ws, capsys):
    code, out, _ = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "--dry-run")
    assert code == 0
    for part in ("token_embedding", "position_embedding", "attention", "mlp", "norms", "total"):
        assert part in out
    total = Transformer(ModelConfig(vocab_size=320, block_size=32, n_layer=2, n_head=2, n_embd=32)).num_params()
    assert f"{total:,}" in out


def test_gpt2_small_preset_is_124m(capsys):
    root = Path(__file__).resolve().parents[2]
    code, out, _ = run_cli(capsys, "pretrain", "--config", str(root / "configs/pretrain/gpt2-small.yaml"), "--dry-run")
    assert code == 0
    total = int(next(line for line in out.splitlines() if "total" in line).split()[1].replace(",", ""))
    assert 123_000_000 < total < 125_000_000


def test_stages_are_idempotent(ws, capsys):
    code, out, _ = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml")
    assert code == 0 and "wrote dataset" in out and "no tokenizer yet" in out
    code, out, _ = run_cli(capsys, "tokenizer", "train", "--config", "tiny.yaml")
    assert code == 0
    code, out, _ = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml")
    assert code == 0 and "reused dataset" in out and "tokens at" in out
    manifest = json.loads(next((ws / "datasets").rglob("tokens/*/manifest.json")).read_text())
    assert manifest["vocab_size"] <= 300


def test_runs_lists_nothing(ws, capsys):
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and "no runs" in out


def test_sample_prompt_longer_than_context(ws, capsys, monkeypatch):
    import training.tokenizers.tokenizer as tok_lib

    tok_dir = tok_lib.train_tokenizer(["hello world " * 50, "more text here"], 300, ws / "tok")
    _fake_run(ws, tokenizer_dir=str(tok_dir))
    code, _, err = run_cli(capsys, "sample", "r1", "--prompt", "hello world " * 40)
    assert_user_error(code, err, "the model's context (model.block_size) is 32")


def test_tokenizer_train_with_the_scratch_trainer(ws, capsys):
    code, out, _ = run_cli(capsys, "tokenizer", "train", "--config", "tiny.yaml", "--trainer", "scratch")
    assert code == 0
    name = out.split()[1]
    assert name.startswith("bpe300s-")
    meta = json.loads((ws / "tokenizers" / name / "training_meta.json").read_text())
    assert meta["trainer"] == "scratch" and (ws / "tokenizers" / name / "bpe.json").is_file()
    # The config override means the same thing (and reuses the folder).
    code, again, _ = run_cli(capsys, "tokenizer", "train", "--config", "tiny.yaml", "tokenizer.trainer=scratch")
    assert code == 0 and again == out


def test_bench_tokenizer_user_errors(ws, capsys):
    code, _, err = run_cli(capsys, "bench", "tokenizer", "--text", "missing.txt")
    assert_user_error(code, err, "--text: missing.txt not found")
    Path("empty.txt").write_text("  \n")
    code, _, err = run_cli(capsys, "bench", "tokenizer", "--text", "empty.txt")
    assert_user_error(code, err, "--text: empty.txt is empty")
    code, _, err = run_cli(capsys, "bench", "tokenizer", "--repeats", "0")
    assert_user_error(code, err, "--repeats must be >= 1")


def test_tokenizer_lab_train_on_a_dataset(ws, capsys):
    code, _, _ = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml")
    assert code == 0
    dataset = next((ws / "datasets").iterdir()).name
    code, out, err = run_cli(capsys, "tokenizer", "lab-train", "--dataset", dataset, "--trainer", "scratch",
                             "--vocab-size", "300", "--name", "mine")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-2] == "progress 40/40" and lines[-1].startswith("tokenizer mine at ")
    assert all(line.startswith("progress ") for line in lines[:-1])
    meta = json.loads((ws / "tokenizers" / "mine" / "training_meta.json").read_text())
    assert (meta["trainer"], meta["vocab_size"]) == ("scratch", 300)
    code, _, err = run_cli(capsys, "tokenizer", "lab-train", "--dataset", dataset, "--name", "mine")
    assert_user_error(code, err, "name: a tokenizer called 'mine' already exists")
    code, _, err = run_cli(capsys, "tokenizer", "lab-train", "--dataset", "nope", "--model", "unigram")
    assert_user_error(code, err, "dataset: no dataset 'nope'")
    code, _, err = run_cli(capsys, "tokenizer", "lab-train", "--dataset", dataset, "--vocab-size", "100")
    assert_user_error(code, err, "vocab_size must be between 260")


def test_dataset_of_an_older_playground(ws, capsys):
    """A dataset folder the old `data prepare` wrote: one line saying what to run; running it upgrades the folder."""
    code, out, _ = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml")
    assert code == 0 and "(train " in out and " documents)" in out
    folder = next((ws / "datasets").iterdir())
    (folder / "manifest.json").write_text(json.dumps({"kind": "text", "sources": ["synthetic"], "outputs": {}}))
    code, _, err = run_cli(capsys, "tokenizer", "lab-train", "--dataset", folder.name, "--vocab-size", "300")
    assert_user_error(code, err, f"dataset: no snapshot '{folder.name}': it is a dataset made by an older "
                                 "playground; run `playground data prepare --config")
    code, out, _ = run_cli(capsys, "data", "prepare", "--config", "tiny.yaml")
    assert code == 0 and "wrote dataset" in out
    assert json.loads((folder / "manifest.json").read_text())["kind"] == "snapshot"


def test_dry_run_shows_the_lab_components(ws, capsys):
    code, out, _ = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "--dry-run", "model.pos_embedding=rope",
                           "model.norm_position=post", "model.mlp=relu", "model.n_kv_head=1")
    assert code == 0
    assert "rope positions, post-layernorm, relu MLP (width 128), with biases" in out
    assert "2 heads (1 kv)" in out
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml", "--dry-run", "model.norm=batchnorm")
    assert_user_error(code, err, "model.norm")


def test_bench_inspect(ws, capsys, monkeypatch):
    from benchmarks import inspection as bench_inspect

    code, _, err = run_cli(capsys, "bench", "inspect", "--repeats", "0")
    assert_user_error(code, err, "--repeats must be >= 1")
    code, _, err = run_cli(capsys, "bench", "inspect", "--threads", "0")
    assert_user_error(code, err, "--threads must be >= 1")
    # Tiny stand-ins for the two shapes; the figures keep their names.
    tiny = {"vocab_size": 64, "block_size": 256, "n_layer": 1, "n_head": 2, "n_embd": 16}
    monkeypatch.setattr(bench_inspect, "SHAPES", {"micro": tiny, "gpt2_small": {**tiny, "arch": "llama"}})
    emitted = {}
    monkeypatch.setattr(bench_inspect, "emit", lambda name, figures: emitted.update({name: figures}))
    before = torch.get_num_threads()
    try:
        code, out, _ = run_cli(capsys, "bench", "inspect", "--repeats", "1", "--threads", "1")
    finally:
        torch.set_num_threads(before)
    assert code == 0
    figures = emitted["inspect"]
    for key in ("ms_64_tokens_micro", "ms_256_tokens_micro", "ms_64_tokens_gpt2_small", "ms_256_tokens_gpt2_small"):
        assert figures[key] > 0 and key in figures["details"]
    assert figures["goal_met"] is (figures["ms_64_tokens_micro"] < 500)
    assert "goal (micro, 64 tokens < 500 ms)" in out


def test_from_run_errors(ws, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--from-run", "nosuch")
    assert_user_error(code, err, "--from-run: no run 'nosuch'")
    code, _, err = run_cli(capsys, "pretrain", "--from-run", "x", "--config", "tiny.yaml")
    assert_user_error(code, err, "leave out --config and --resume")


def test_mlflow_bad_port(ws, capsys):
    code, _, err = run_cli(capsys, "mlflow", "--port", "70000")
    assert_user_error(code, err, "--port must be 1-65535")


def test_a_ray_cluster_left_running_is_one_line(ws, capsys, monkeypatch):
    """With `playground up` (or `ray start`) running, a terminal `playground pretrain` joins that
    cluster, and Ray refuses the CPU count asked for a local one. The recipe's `ray.init` is
    replaced by Ray's own refusal (recorded from a real run): a unit test starts no cluster."""
    import ray

    def refuse(*args, **kwargs):
        raise ValueError("When connecting to an existing cluster, num_cpus and num_gpus must not be provided.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    code, _, err = run_cli(capsys, "pretrain", "--config", "tiny.yaml")
    assert_user_error(code, err, "a Ray cluster is already running on this machine")
    assert "ray job submit" in err and "playground down" in err


def test_other_value_errors_keep_their_traceback(ws, monkeypatch):
    """Only Ray's refusal to join is a user situation; any other ValueError is a bug and is raised."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(ValueError("something else")))
    with pytest.raises(ValueError, match="something else"):
        main(["pretrain", "--config", "tiny.yaml"])
