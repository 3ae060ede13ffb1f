"""The evaluation suites we run with lm-evaluation-harness: our own task YAMLs over local JSONL (offline).

lm-eval describes a task in YAML: where the data is, how a row becomes a prompt, what the
answer is, which metric to report. Its built-in tasks read their data from the Hugging Face
Hub; ours point `dataset_path: json` at local JSONL files, so nothing needs the network (but
the few of lm-eval's own tasks we offer by name, for users who are online). Three families:

- the world suites (evaluation/world_suites.py): questions about the starter corpus's made-up
  world, in its own sentences, which a small model pretrained on it can answer;
- MMLU (evaluation/mmlu.py): lm-eval's MMLU, prompt and groups taken from the installed
  library, over the test questions from a local file;
- HellaSwag, TruthfulQA, ARC, GSM8K (evaluation/online_tasks.py): by their lm-eval names,
  lm-eval's own tasks reading the Hub (for users who are online); as `<name>_sample`, the same
  installed task over a few hand-written rows shipped in evaluation/samples/;

and the custom benchmarks users register in a workspace (evaluation/custom.py), lm-eval tasks named
`custom_<name>`. They live in the workspace, not in this module, so the functions that resolve
names take them as an optional `custom` argument: `custom.list_custom(ws.root)`, a plain dict that
also travels to Ray tasks. Without it, only the built-in suites are known.

    root = prepare(ws / "evals" / "tasks")                # writes the YAML and JSONL files
    tm = task_manager(root)                               # lm-eval's index of them
    lm_eval.simple_evaluate(model="hf", model_args="pretrained=...", task_manager=tm,
                            tasks=expand(["world", "mmlu_offline_stem"]))

or from a shell: `lm_eval --include_path <root> --tasks world_facts,mmlu_offline ...`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from evaluation import custom as custom_
from evaluation import mmlu, online_tasks, world_suites
from training.errors import UserError


@dataclass(frozen=True)
class Suite:
    """What a user can ask to run, and what it means to lm-eval."""

    name: str
    title: str
    kind: Literal["multiple_choice", "generate_until"]
    n_choices: int | None  # None for free generation, or choices whose number varies (then `guess`)
    description: str
    tasks: tuple[str, ...]  # the lm-eval task or group names it runs
    engine: Literal["lm_eval", "humaneval"] = "lm_eval"  # humaneval: scored by running code (evaluation/humaneval.py)
    guess: float | None = None  # the score of guessing where 1 / choices cannot say it (TruthfulQA)

    @property
    def chance(self) -> float:
        """The score of guessing: 1 / choices for multiple choice, 0 for generation (or `guess`)."""
        if self.guess is not None:
            return self.guess
        return 1 / self.n_choices if self.n_choices else 0.0


_MC = "multiple_choice"
WORLD = ("world_facts", "world_arithmetic", "world_stories", "world_instructions")
_CATEGORY_TITLES = {"stem": "STEM", "humanities": "humanities", "social_sciences": "social sciences",
                    "other": "other (business, health, misc.)"}
SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("world_facts", "World facts", _MC, 4,
          "Capitals, languages, animals, rivers of the corpus's made-up countries, as cloze sentences "
          "(\"The capital of Varnia is\" -> Tolbek.).", ("world_facts",)),
    Suite("world_arithmetic", "World arithmetic", _MC, 4,
          "The corpus's \"Q: What is 7 plus 5? A:\" lines against near misses (off by one, wrong operation).",
          ("world_arithmetic",)),
    Suite("world_stories", "World stories", _MC, 4,
          "A corpus story, then a question about it (who helped, what was lost, what was shared).",
          ("world_stories",)),
    Suite("world_instructions", "Held-out instructions", "generate_until", None,
          "The held-out SFT questions, answered in free text: for chat-tuned models, run with "
          "--apply_chat_template.", ("world_instructions",)),
    Suite("mmlu_offline", "MMLU", _MC, 4,
          "MMLU's 14,042 test questions in 57 subjects, zero-shot, lm-eval's prompt; accuracy over all questions.",
          (mmlu.PREFIX,)),
    *[Suite(f"{mmlu.PREFIX}_{c}", f"MMLU {title}", _MC, 4, f"The MMLU subjects lm-eval files under {title}.",
            (f"{mmlu.PREFIX}_{c}",)) for c, title in _CATEGORY_TITLES.items()],
    Suite("humaneval", "HumanEval", "generate_until", None,
          "164 Python functions to complete from their docstring; pass@1, scored by running the code against "
          "the problem's tests in a sandbox (lm-eval's own task needs the Hub).", ("humaneval",), "humaneval"),
    *[Suite(t.name, t.title, t.kind, t.n_choices, f"{t.description} lm-eval's own task: reads "
            f"{t.dataset} from the Hugging Face Hub (online only; offline, run {t.sample}).",
            (t.name,), guess=online_tasks.guess(t.name)) for t in online_tasks.TASKS.values()],
    *[Suite(t.sample, f"{t.title} (sample)", t.kind, t.n_choices,
            f"lm-eval's {t.name} task (its prompt, code and metrics, from the installed lm-eval) on "
            f"{len(online_tasks.rows(t.name))} hand-written rows shaped like its dataset "
            f"(evaluation/samples/{t.sample_file}): runs offline, shows the code path, measures nothing.",
            (t.sample,), guess=online_tasks.guess(t.sample)) for t in online_tasks.TASKS.values()],
]}
ALIASES: dict[str, tuple[str, ...]] = {"world": WORLD, "mmlu": (mmlu.PREFIX,)}


def _is_subject(task: str) -> bool:
    """Whether `task` is one MMLU subject's task (mmlu_offline_anatomy)."""
    return task.startswith(f"{mmlu.PREFIX}_") and task.removeprefix(f"{mmlu.PREFIX}_") in mmlu.subjects()


Custom = dict[str, dict] | None  # registered benchmarks by name: custom.list_custom(ws.root)


def _custom_task(name: str, custom: Custom) -> str | None:
    """The lm-eval task of the registered benchmark `name` (or `custom_<name>`), if there is one."""
    bare = name.removeprefix(custom_.PREFIX)
    return custom_.PREFIX + bare if custom and bare in custom else None


def _custom_meta(task: str, custom: Custom) -> dict | None:
    """The meta of the registered benchmark whose lm-eval task is `task`."""
    return custom[task.removeprefix(custom_.PREFIX)] if _custom_task(task, custom) == task else None


def _source(name: str) -> str:
    """The suite whose files provide `name`, a SUITES key or an MMLU subject task (as `_parts` gives)."""
    return mmlu.PREFIX if name.startswith(mmlu.PREFIX) else name


def _parts(name: str, custom: Custom = None) -> tuple[str, ...]:
    """A user's name as SUITES keys, MMLU subject tasks or custom_<name> tasks; lm-eval's own MMLU
    names (mmlu_stem, mmlu_anatomy) mean our offline copies, as "mmlu" does."""
    if name in ALIASES:
        return ALIASES[name]
    offline = mmlu.PREFIX + name.removeprefix("mmlu") if name.startswith("mmlu_") else name
    for candidate in (name, offline):
        if candidate in SUITES or _is_subject(candidate):
            return (candidate,)
    if task := _custom_task(name, custom):
        return (task,)
    known = [*ALIASES, *SUITES, f"{mmlu.PREFIX}_<subject>", *(custom or {})]
    raise UserError(f"tasks: unknown eval suite {name!r} (known: {', '.join(known)})")


def _groups_running(task: str) -> set[str]:
    """The MMLU groups that run `task` as part of them."""
    rest = task.removeprefix(f"{mmlu.PREFIX}_")
    if _is_subject(task):
        return {mmlu.PREFIX, f"{mmlu.PREFIX}_{mmlu.subjects()[rest][0]}"}
    return {mmlu.PREFIX} if task in SUITES and rest in _CATEGORY_TITLES else set()


def expand(names: Iterable[str], custom: Custom = None) -> list[str]:
    """The lm-eval task and group names that user-facing suite names stand for, in order, once each.

    Example: ["world", "mmlu"] -> ["world_facts", "world_arithmetic", "world_stories",
    "world_instructions", "mmlu_offline"]; "mmlu_offline_anatomy" (or "mmlu_anatomy") stands for
    itself. A subject or category asked for beside a group that contains it is dropped: lm-eval
    refuses a task that comes twice ("Duplicate task ... found in both"), and the group reports it anyway.
    A registered benchmark (in `custom`) "capitals" or "custom_capitals" stands for custom_capitals.

    Raises:
        UserError: an unknown name (the message lists the known ones), or no names at all.
    """
    out: list[str] = []
    for name in names:
        for part in _parts(name, custom):
            out += [t for t in (SUITES[part].tasks if part in SUITES else (part,)) if t not in out]
    if not out:
        raise UserError(f"tasks: no eval suites named (choose from: {', '.join([*ALIASES, *SUITES, *(custom or {})])})")
    return [t for t in out if not _groups_running(t) & set(out)]


def members(name: str) -> set[str]:
    """The lm-eval tasks whose items a task or group scores: an MMLU group's subjects, else the task itself."""
    return {f"{mmlu.PREFIX}_{s}" for s in mmlu.subjects() if name in _groups_running(f"{mmlu.PREFIX}_{s}")} or {name}


def chance(name: str, custom: Custom = None) -> float | None:
    """The guessing score of an lm-eval task or group of ours (0 for generation); None for any other name."""
    if name in SUITES:
        return SUITES[name].chance
    if meta := _custom_meta(name, custom):
        return meta["chance"]
    return SUITES[mmlu.PREFIX].chance if _is_subject(name) else None


def is_chat(name: str, custom: Custom = None) -> bool:
    """Whether every task `name` stands for is free generation, meant to run through the chat template
    (world_instructions, a custom generation benchmark). "world" mixes both kinds, so it is not."""
    def kind(t: str) -> str | None:
        meta = _custom_meta(t, custom)
        return meta["kind"] if meta else SUITES[t].kind if t in SUITES else None

    return all(kind(t) == "generate_until" for t in expand([name], custom))


def units(names: Iterable[str], custom: Custom = None) -> dict[str, list[str]]:
    """The units an evaluation runs, one after another or in parallel: each suite a user names, with
    the lm-eval tasks it expands to. An alias is split into its suites ("world" -> world_facts, ...),
    so each is recorded, followed and (world_instructions) rendered through the chat template alone.

    >>> units(["world_facts", "mmlu_stem"])
    {'world_facts': ['world_facts'], 'mmlu_stem': ['mmlu_offline_stem']}
    """
    out: dict[str, list[str]] = {}
    for name in names:
        for unit in ALIASES.get(name, (name,)) if name != "mmlu" else (name,):
            out.setdefault(unit, expand([unit], custom))
    return out


def engine(unit: str) -> str:
    """"humaneval" for the HumanEval unit, else "lm_eval"."""
    return SUITES[unit].engine if unit in SUITES else "lm_eval"


def catalog(custom: Custom = None) -> list[dict]:
    """What GET /api/eval-tasks lists: every suite and alias, its kind, choices and chance level; then
    the registered benchmarks (`custom: true`, with their metric and size). `hub: true` marks lm-eval's
    own tasks, which read their data from the Hugging Face Hub."""
    rows = [{"name": a, "title": "all of " + ", ".join(ts), "kind": "alias", "n_choices": None, "chance": None,
             "description": f"shorthand for {', '.join(ts)}"} for a, ts in ALIASES.items() if a != "mmlu"]
    rows += [{"name": "mmlu" if s.name == mmlu.PREFIX else s.name, "title": s.title, "kind": s.kind,
              "n_choices": s.n_choices, "chance": s.chance, "description": s.description,
              "hub": s.name in online_tasks.TASKS} for s in SUITES.values()]
    rows += [{"name": name, "title": f"{name} (custom)", "kind": m["kind"], "n_choices": m["n_choices"],
              "chance": m["chance"], "description": m["description"] or f"{m['n']} items, scored by {m['metric']}",
              "custom": True, "task": m["task"], "metric": m["metric"], "n": m["n"], "created_at": m["created_at"]}
             for name, m in (custom or {}).items()]
    return rows


# ---------------------------------------------------------------- writing the files


class _Dumper(yaml.SafeDumper):
    """Safe YAML, plus lm-eval's `!function module.name` tag for world_suites.Function values."""


_Dumper.add_representer(world_suites.Function, lambda d, v: d.represent_scalar("!function", str(v)))
# Strings with line breaks (prompts, MMLU descriptions) double-quoted, "\n" and all: one line, as lm-eval writes them.
_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style='"' if "\n" in v else None))
_HEADER = "# Written by evaluation/suites.py (prepare): edit the code, not this file.\n"


def _text(name: str, content: dict | list[dict]) -> str:
    if name.endswith(".jsonl"):
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in content)
    return _HEADER + yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)


def _write(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds it; True when the file changed.

    Untouched files keep their modification time, so lm-eval's dataset cache (keyed on the
    data files) stays valid across runs. A changed file goes to a hidden temporary name first,
    then `os.replace` swaps it in: readers see the old file or the new one, never half of one.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # not *.yaml: lm-eval never indexes it
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _files(source: str, folder: Path, custom: Custom = None) -> dict[str, dict | list[dict]]:
    if meta := _custom_meta(source, custom):  # its rows stay where `custom.register` wrote them
        return {f"{source}.yaml": custom_.task_config(source, Path(meta["data_file"]), meta)}
    if source in SUITES and SUITES[source].engine != "lm_eval":
        return {}  # not an lm-eval task: nothing to write
    if online_tasks.needs_hub([source]):
        return {}  # lm-eval's own task, indexed from the installed library: nothing to write
    if base := online_tasks.sample_of(source):  # its rows stay in evaluation/samples/
        return {f"{source}.yaml": online_tasks.sample_config(base)}
    if source == mmlu.PREFIX:
        return mmlu.files(folder)
    data = folder / f"{source}.jsonl"
    return {data.name: world_suites.ITEMS[source](), f"{source}.yaml": world_suites.task_config(source, data)}


def prepare(root: Path, names: Iterable[str] | None = None, custom: Custom = None) -> Path:
    """Write the data and lm-eval YAML of the suites `names` (default: all, with those in `custom`) under `root`.

    Each suite gets a folder (`root/world_facts/`, `root/mmlu_offline/`...). Running it again
    rewrites only files whose content changed. Asking for one MMLU subject or category writes
    all of MMLU, since its groups name every subject. A sample (`hellaswag_sample`) gets its YAML
    only, over the file in evaluation/samples/; lm-eval's Hub tasks (`hellaswag`) get nothing.

    Args:
        root: the folder to write into, e.g. `workspace/evals/tasks`.
        names: suite names as `expand` takes them; None for every suite.
        custom: the registered benchmarks (`custom.list_custom(ws.root)`); a custom one gets only its
            YAML here, pointing at the rows in workspace/evals/custom/.

    Returns:
        The absolute folder to give lm-eval as its include path.
    """
    root = Path(root).expanduser().resolve()
    sources = list(WORLD) + [mmlu.PREFIX] + list(online_tasks.SAMPLE_TASKS) + \
        [custom_.PREFIX + c for c in custom or {}] if names is None else \
        list(dict.fromkeys(_source(part) for name in names for part in _parts(name, custom)))
    for source in sources:
        folder = root / source
        for name, content in _files(source, folder, custom).items():
            _write(folder / name, _text(name, content))
    return root


def task_manager(root: Path, names: Iterable[str] | None = None, custom: Custom = None, *,
                 include_defaults: bool | None = None):
    """`prepare` the suites, then return lm-eval's `TaskManager` over them.

    Args:
        root: as for `prepare`.
        names: as for `prepare`.
        custom: as for `prepare`.
        include_defaults: also index lm-eval's ~15,000 built-in tasks (about 30 s on 2 cores).
            Default: only when `names` has one of the Hub tasks (`hellaswag`, `gsm8k`...), which
            live there; otherwise our suites only (a fraction of a second).
    """
    from lm_eval.tasks import TaskManager  # importing lm-eval takes seconds: only when asked for

    names = None if names is None else list(names)
    if include_defaults is None:
        include_defaults = bool(names) and needs_hub(names, custom)
    return TaskManager(include_path=str(prepare(root, names, custom)), include_defaults=include_defaults)


def needs_hub(names: Iterable[str], custom: Custom = None) -> bool:
    """Whether the suites `names` (as `expand` takes them) include one of lm-eval's Hub tasks."""
    return online_tasks.needs_hub(expand(names, custom))
