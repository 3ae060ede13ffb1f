"""HellaSwag, TruthfulQA, ARC and GSM8K: lm-eval's own tasks by their names, and a local sample of each.

For users who are online, `hellaswag`, `truthfulqa_mc1`, `truthfulqa_mc2`, `truthfulqa_gen`,
`arc_easy`, `arc_challenge` and `gsm8k` run lm-eval's built-in task as it is: its data comes
from the Hugging Face Hub, so the run needs lm-eval's default task index
(`suites.task_manager(..., include_defaults=True)`) and a network.

Each also has `<name>_sample`: the same task, everything but the data taken from the installed
lm-eval (as evaluation/mmlu.py does for MMLU), over a handful of rows we wrote ourselves in the
fields and shapes of the Hub dataset (evaluation/samples/<dataset>-<config>.jsonl). The sample's
YAML `include`s lm-eval's YAML by its absolute path, so its prompt, its `process_docs` and
`process_results` (from lm-eval's utils.py next to it), its metrics and filters are lm-eval's,
and only these keys are ours:

- `task` (`<name>_sample`) and `tag: []` (so it joins none of lm-eval's tags);
- `dataset_path: json`, `dataset_name: null` and `data_files`: every split the YAML names
  (training, validation, test, few-shot) reads the one sample file;
- `test_split` and `fewshot_split`, both the split the task is scored on: few-shot examples
  (gsm8k takes 5) come from the same rows, and lm-eval leaves out the row being asked only when
  the few-shot split is the test split.

A sample's score measures nothing (six questions); it shows that the code path runs, offline.

`truthfulqa_gen` is here because lm-eval 0.4's YAML scores it with BLEU and ROUGE only (sacrebleu
and rouge-score, installed); its BLEURT metrics, which would download a model, are commented out.

Offline, asking for a Hub name fails in `datasets` ("Couldn't reach 'Rowan/hellaswag' on the
Hub"); `hub_errors` turns that into one line that names the sample to run instead.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from training.errors import UserError

SAMPLES = Path(__file__).resolve().parent / "samples"
SUFFIX = "_sample"
_SPLITS = ("training_split", "validation_split", "test_split", "fewshot_split")


@dataclass(frozen=True)
class HubTask:
    """One lm-eval built-in task and the sample that stands in for its data."""

    name: str  # lm-eval's task name
    title: str
    yaml: str  # its YAML, under lm_eval/tasks/
    dataset: str  # the Hub dataset its YAML reads (dataset_path; a test holds them equal)
    sample_file: str  # under evaluation/samples/
    kind: Literal["multiple_choice", "generate_until"]
    n_choices: int | None  # None: generation, or a number that varies from question to question
    description: str

    @property
    def sample(self) -> str:
        return self.name + SUFFIX


_MC, _GEN = "multiple_choice", "generate_until"
_TQA = ("817 questions that some people answer falsely from a misconception, zero-shot after lm-eval's "
        "six-question QA prompt")
TASKS: dict[str, HubTask] = {t.name: t for t in [
    HubTask("hellaswag", "HellaSwag", "hellaswag/hellaswag.yaml", "Rowan/hellaswag", "hellaswag.jsonl", _MC, 4,
            "The most plausible ending of an everyday scene (ActivityNet captions, WikiHow steps): "
            "10,042 validation items, zero-shot; acc and acc_norm."),
    HubTask("truthfulqa_mc1", "TruthfulQA MC1", "truthfulqa/truthfulqa_mc1.yaml", "truthfulqa/truthful_qa",
            "truthful_qa-multiple_choice.jsonl", _MC, None, f"{_TQA}: the one true answer among 4-5 false ones (acc)."),
    HubTask("truthfulqa_mc2", "TruthfulQA MC2", "truthfulqa/truthfulqa_mc2.yaml", "truthfulqa/truthful_qa",
            "truthful_qa-multiple_choice.jsonl", _MC, None,
            f"{_TQA}: several true and false answers; acc is the probability mass put on the true ones."),
    HubTask("truthfulqa_gen", "TruthfulQA generation", "truthfulqa/truthfulqa_gen.yaml", "truthfulqa/truthful_qa",
            "truthful_qa-generation.jsonl", _GEN, None,
            f"{_TQA}, answered in free text; BLEU and ROUGE against the true and the false reference answers "
            "(bleu_acc: closer to a true one)."),
    HubTask("arc_easy", "ARC Easy", "arc/arc_easy.yaml", "allenai/ai2_arc", "ai2_arc-ARC-Easy.jsonl", _MC, 4,
            "2,376 grade-school science questions (test set), mostly 4 choices (3 to 5), zero-shot; acc and acc_norm."),
    HubTask("arc_challenge", "ARC Challenge", "arc/arc_challenge.yaml", "allenai/ai2_arc",
            "ai2_arc-ARC-Challenge.jsonl", _MC, 4,
            "1,172 science questions (test set) that retrieval and word co-occurrence baselines got wrong; "
            "acc and acc_norm."),
    HubTask("gsm8k", "GSM8K", "gsm8k/gsm8k.yaml", "openai/gsm8k", "gsm8k-main.jsonl", _GEN, None,
            "1,319 grade-school math word problems, 5-shot, greedy; exact match on the number after \"####\" "
            "(strict-match) or on the last number (flexible-extract)."),
]}
SAMPLE_TASKS: dict[str, str] = {t.sample: t.name for t in TASKS.values()}  # hellaswag_sample -> hellaswag


def sample_of(name: str) -> str | None:
    """The Hub task whose sample `name` is (hellaswag_sample -> hellaswag), else None."""
    return SAMPLE_TASKS.get(name)


def needs_hub(tasks: Iterable[str]) -> bool:
    """Whether any of the lm-eval `tasks` is one of lm-eval's built-in tasks here, which read the Hub."""
    return any(t in TASKS for t in tasks)


@functools.cache
def _tasks_dir() -> Path:
    """lm-eval's installed task folder, found without importing lm-eval (that takes seconds)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("lm-eval is not installed: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "tasks"


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads lm-eval's `!function utils.process_docs` as the plain string."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def yaml_path(name: str) -> Path:
    """The installed YAML of Hub task `name`."""
    return _tasks_dir() / TASKS[name].yaml


def installed(name: str) -> dict:
    """The installed YAML of Hub task `name` as lm-eval reads it: `include`s merged, local keys winning."""
    def load(path: Path) -> dict:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
        merged, includes = {}, cfg.pop("include", [])
        for inc in includes if isinstance(includes, list) else [includes]:
            merged |= load(path.parent / inc)
        return merged | cfg

    return load(yaml_path(name))


def sample_config(name: str) -> dict:
    """The lm-eval YAML (as a dict) of `<name>_sample`: lm-eval's task `name`, data from its sample file."""
    cfg = installed(name)
    scored = cfg.get("test_split") or cfg["validation_split"]
    data = str(SAMPLES / TASKS[name].sample_file)
    return {"include": str(yaml_path(name)), "task": TASKS[name].sample, "tag": [],
            "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {cfg[k]: data for k in _SPLITS if cfg.get(k)}},
            "test_split": scored, "fewshot_split": scored}


def rows(name: str) -> list[dict]:
    """The rows of Hub task `name`'s sample file (or of the sample task `<name>_sample`)."""
    task = TASKS[sample_of(name) or name]
    with open(SAMPLES / task.sample_file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def guess(name: str) -> float | None:
    """The expected score of guessing where the number of choices varies, from the sample's questions:
    TruthfulQA MC1, 1 / choices (the dataset pairs the one true answer with 4 to 5 false ones, so 1/6 to
    1/5; the sample: 0.19); MC2, the share of true answers, what a uniform distribution puts on them. Else None."""
    base = sample_of(name) or name
    if base not in ("truthfulqa_mc1", "truthfulqa_mc2"):
        return None
    targets = [row[base.removeprefix("truthfulqa_") + "_targets"]["labels"] for row in rows(base)]
    per_row = [1 / len(t) if base == "truthfulqa_mc1" else sum(t) / len(t) for t in targets]
    return sum(per_row) / len(per_row)


def unreachable(name: str) -> str:
    """The one line for a Hub task whose data cannot be fetched."""
    return (f"tasks: {name} reads {TASKS[name].dataset} from the Hugging Face Hub, which this machine cannot "
            f"reach; run {TASKS[name].sample} to try the same task on a local sample")


@contextlib.contextmanager
def hub_errors(tasks: Iterable[str]) -> Iterator[None]:
    """Around an lm-eval run of `tasks`: a Hub task whose dataset `datasets` cannot reach becomes one UserError.

    `datasets` says "Couldn't reach 'Rowan/hellaswag' on the Hub (OfflineModeIsEnabled)" when
    HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set, and "(LocalEntryNotFoundError)" after its retries
    when there is no network; both are ConnectionErrors that name the dataset. Any other error passes.
    """
    hub = [t for t in tasks if t in TASKS]
    try:
        yield
    except ConnectionError as e:
        found = re.search(r"Couldn't reach '([^']+)'", str(e))
        task = next((t for t in hub if found and TASKS[t].dataset == found.group(1)), None)
        if task is None:
            raise
        raise UserError(unreachable(task)) from None


_OFFLINE = "HF_DATASETS_OFFLINE"
_set_here = False  # whether this process's HF_DATASETS_OFFLINE=1 is ours (datasets_offline), not the user's


def datasets_offline(tasks: Iterable[str]) -> bool:
    """Set HF_DATASETS_OFFLINE=1 unless one of the lm-eval `tasks` reads the Hub; True when it is set now.

    Our suites read local files, and `datasets` offline never waits on the network for them; a run
    of a Hub task needs the network. A value the user set is kept. A Ray worker runs task after task
    in one process and `datasets` reads the variable once, on import, so a 1 set here for an earlier
    offline run is taken back, and `datasets.config` follows the variable when it is imported already.
    """
    global _set_here
    if not needs_hub(tasks):
        if _OFFLINE not in os.environ:
            os.environ[_OFFLINE], _set_here = "1", True
    elif _set_here:
        del os.environ[_OFFLINE]
        _set_here = False
    value = os.environ.get(_OFFLINE)
    if (config := sys.modules.get("datasets.config")) is not None:
        from huggingface_hub import constants

        offline = constants.HF_HUB_OFFLINE if value is None else value.upper() in config.ENV_VARS_TRUE_VALUES
        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = offline
    return value is not None and value.upper() in ("1", "ON", "YES", "TRUE")
