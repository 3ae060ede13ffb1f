from pathlib import Path

import pytest

from training.config import PretrainConfig, deep_merge, dump_config, load_config, parse_overrides, read_yaml
from training.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
ALL_YAML = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_has_a_launch_header(path):
    text = path.read_text()
    assert text.startswith("#") and "playground " in text.split("\n\n")[0], "header must say how to launch it"


@pytest.mark.parametrize("path", sorted((ROOT / "configs/pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_every_pretrain_config_validates(path):
    cfg = load_config(path)
    assert cfg.tokenizer.vocab_size <= cfg.model.vocab_size


@pytest.mark.parametrize("path", sorted((ROOT / "configs/serve").glob("*.yaml")), ids=lambda p: p.name)
def test_every_serve_config_validates(path):
    """Ray's own schema for the file, ours for each application's args."""
    from ray.serve.schema import ServeDeploySchema

    from services.schemas import APIAppArgs, LLMAppArgs

    deploy = ServeDeploySchema.model_validate(read_yaml(path))
    arg_schemas = {"services.app:build_llm_app": LLMAppArgs, "services.app:build_api_app": APIAppArgs}
    for app in deploy.applications:
        arg_schemas[app.import_path].model_validate(app.args)
    assert deploy.http_options.host == "127.0.0.1"


@pytest.mark.parametrize("path", sorted((ROOT / "configs/data").glob("*.yaml")), ids=lambda p: p.name)
def test_every_data_config_validates(path):
    from training.data.config import PipelineConfig

    cfg = load_config(path, schema=PipelineConfig)
    assert cfg.sources and abs(cfg.split.train + cfg.split.val + cfg.split.test - 1) < 1e-9


@pytest.mark.parametrize("path", sorted((ROOT / "configs/sft").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sft_config_validates(path):
    from training.posttrain.config import SFTConfig

    cfg = load_config(path, schema=SFTConfig)
    assert cfg.base.model and cfg.train.eval_interval <= cfg.train.max_steps


@pytest.mark.parametrize("path", sorted((ROOT / "configs/align").glob("*.yaml")), ids=lambda p: p.name)
def test_every_align_config_validates(path):
    from training.posttrain.align_config import AlignConfig

    cfg = load_config(path, schema=AlignConfig)  # the file names its method, as `playground <method>` would
    assert cfg.method == path.stem and cfg.base.model and cfg.train.eval_interval <= cfg.train.max_steps
    if cfg.method == "grpo":
        assert cfg.train.batch_size % cfg.grpo.num_generations == 0  # whole groups per batch


def test_grpo_without_a_reward_model_is_refused_naming_the_field():
    from training.errors import UserError
    from training.posttrain.align_config import AlignConfig

    with pytest.raises(UserError, match=r"reward_model.*grpo needs a reward model"):
        load_config(None, ["method=grpo", "base.model=m"], schema=AlignConfig)


@pytest.mark.parametrize("path", sorted((ROOT / "configs/experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_config_validates(path):
    from training.posttrain.experiment import load_experiment

    exp, configs, name = load_experiment(path)
    assert name == path.stem and {"full"} < set(configs) and exp.forgetting
    assert all(c.train.eval_interval <= c.train.max_steps for c in configs.values())


@pytest.mark.parametrize("path", sorted((ROOT / "configs/eval").glob("*.yaml")), ids=lambda p: p.name)
def test_every_eval_config_validates(path):
    from evaluation.config import EvalConfig
    from evaluation.suites import expand

    cfg = load_config(path, ["models=[some-model]"], schema=EvalConfig)
    assert expand(cfg.tasks)  # every task it names is known


def test_covers_every_config_folder():
    assert {p.relative_to(ROOT / "configs").parts[0] for p in ALL_YAML} == {
        "pretrain", "serve", "data", "tune", "sft", "align", "experiments", "eval", "prompts"}


def test_layering_defaults_then_yaml_then_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("train:\n  lr: 0.01\n  max_steps: 7\nmodel:\n  n_layer: 3\n")
    cfg = load_config(f, ["train.lr=5e-4", "model.arch=llama", "train.sample_prompts=[a, b]"])
    assert cfg.train.lr == 5e-4  # override beats YAML
    assert cfg.train.max_steps == 7  # YAML beats default
    assert cfg.train.batch_size == PretrainConfig().train.batch_size  # default kept
    assert cfg.model.n_layer == 3 and cfg.model.arch == "llama"
    assert cfg.train.sample_prompts == ["a", "b"]


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["train.lerning_rate=1"], "train.lerning_rate: unknown key"),
        (["model.n_layr=2"], "model.n_layr: unknown key"),
        (["bogus=1"], "bogus: unknown key"),
        (["train.max_steps=abc"], "train.max_steps"),
        (["train.lr=-1"], "train.lr"),
        (["model.arch=rnn"], "model.arch"),
        (["train.precision=fp8"], "train.precision"),
        (["data.sources=[]"], "data.sources"),
        (["data.name=my data"], "data.name"),  # a folder name in the workspace
        (["data.val_fraction=1.5"], "data.val_fraction"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides, fragment):
    with pytest.raises(UserError) as e:
        load_config(None, overrides)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_model_invariants_are_checked():
    with pytest.raises(UserError, match="model"):
        load_config(None, ["model.n_embd=100", "model.n_head=3"])


@pytest.mark.parametrize("bad", ["noequals", "=1", "a..b=1", "1a=2"])
def test_malformed_override(bad):
    with pytest.raises(UserError, match="bad override"):
        parse_overrides([bad])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(listy)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/pretrain/llama-small.yaml", ["train.lr=1e-4"])
    out = tmp_path / "config.yaml"
    out.write_text(dump_config(cfg))
    assert load_config(out) == cfg


def test_ids_are_stable_and_distinct():
    a = load_config(None, ["data.synthetic_chars=1000"])
    b = load_config(None, ["data.synthetic_chars=2000"])
    assert a.data.dataset_id() == load_config(None, ["data.synthetic_chars=1000"]).data.dataset_id()
    assert a.data.dataset_id() != b.data.dataset_id()
    assert load_config(None, ["data.name=mine"]).data.dataset_id() == "mine"
    assert a.tokenizer.tokenizer_id("ds") == "bpe4096-ds"
    assert a.data.dataset_id().startswith("synthetic-")  # as before snapshots: old workspaces keep their ids


def test_data_prepare_runs_the_pipeline_with_cleaning_off():
    """`data prepare` is the data pipeline with its cleaning stages off: DataConfig -> PipelineConfig."""
    d = load_config(None, ["data.sources=[a.txt, hf:org/set]", "data.val_fraction=0.1", "data.split_seed=7",
                           "data.text_field=body"]).data
    p = d.pipeline_config()
    assert p.name == d.dataset_id() and p.sources == ["a.txt", "hf:org/set"] and p.text_field == "body"
    assert not any(getattr(p.stages, stage).enabled for stage in type(p.stages).model_fields)
    assert (p.split.train, p.split.val, p.split.test, p.split.seed) == (0.9, 0.1, 0.0, 7)


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    top = {"a": {"b": 3}}
    assert deep_merge(base, top) == {"a": {"b": 3, "c": 2}}
    assert base == {"a": {"b": 1, "c": 2}}


def test_tokenizer_ids_per_trainer_and_model():
    ds = "data-1234"
    cfg = load_config(None)
    assert (cfg.tokenizer.trainer, cfg.tokenizer.model) == ("hf", "bpe")
    assert cfg.tokenizer.tokenizer_id(ds) == "bpe4096-data-1234"  # unchanged: existing workspaces stay valid
    assert load_config(None, ["tokenizer.trainer=scratch"]).tokenizer.tokenizer_id(ds) == "bpe4096s-data-1234"
    assert load_config(None, ["tokenizer.model=unigram"]).tokenizer.tokenizer_id(ds) == "unigram4096-data-1234"
    assert load_config(None, ["tokenizer.path=/x/my-tok", "tokenizer.trainer=scratch"]).tokenizer.tokenizer_id(ds) == "my-tok"


def test_tokenizer_trainer_and_model_errors():
    with pytest.raises(UserError, match="tokenizer: .*trainer=scratch only trains model=bpe, got model=wordpiece"):
        load_config(None, ["tokenizer.trainer=scratch", "tokenizer.model=wordpiece"])
    with pytest.raises(UserError, match="tokenizer.trainer: "):
        load_config(None, ["tokenizer.trainer=fast"])
    with pytest.raises(UserError, match="tokenizer.model: "):
        load_config(None, ["tokenizer.model=sentencepiece"])
