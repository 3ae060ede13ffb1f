"""`playground benchmark ...`: your own evaluation questions, registered as a suite (evaluation/custom.py).

    playground benchmark add --file capitals.jsonl --name capitals [--metric contains] [--description "..."]
    playground benchmark list [--json]
    playground benchmark remove capitals
    playground eval --model M --tasks capitals          # then run it like any other suite

A file is one JSON object per line: `{"question", "choices", "answer"}` (multiple choice) or
`{"prompt", "answer"}` (generation). Every line is checked before anything is written; the first
bad one is the error, with its line number: `error: capitals.jsonl: line 7: answer: 4 is out of
range for 3 choices` (exit code 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from training.errors import UserError


def add_benchmark_parsers(sub) -> None:
    bench = sub.add_parser("benchmark", help="custom benchmarks: register a JSONL file of questions as an "
                                             "eval suite").add_subparsers(dest="action", required=True,
                                                                          metavar="ACTION")
    p = bench.add_parser("add", help="check a JSONL file line by line and register it (replacing one of that name)")
    p.add_argument("--file", "-f", required=True, help="the JSONL file: {question, choices, answer} or "
                                                       "{prompt, answer} per line")
    p.add_argument("--name", "-n", required=True, help="what --tasks calls it (lowercase, digits, _); lm-eval "
                                                       "runs it as custom_<name>")
    p.add_argument("--metric", help="generation: exact_match (default), contains or f1; multiple choice: acc")
    p.add_argument("--description", default="", help="one line on what it measures")
    p.set_defaults(func=cmd_add)
    p = bench.add_parser("list", help="the registered benchmarks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    p = bench.add_parser("remove", help="unregister a benchmark (evaluations that ran it keep their scores)")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)


def _root(args) -> Path:
    from training.workspace import Workspace

    return Workspace.resolve(args.workspace).root


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"--file: cannot read {path} ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--file: {path} is not UTF-8 text (byte {e.start})") from None


def cmd_add(args) -> None:
    from evaluation import custom

    path = Path(args.file).expanduser()
    try:
        meta = custom.register(_root(args), args.name, _read(path), metric=args.metric, description=args.description)
    except UserError as e:
        msg = str(e)
        if msg.startswith("line "):  # where in the file, as a compiler says it
            raise UserError(f"{path}: {msg}") from None
        if msg.startswith("text: "):
            raise UserError(f"{path}: {msg.removeprefix('text: ')}") from None
        raise UserError(f"--{msg}" if msg.startswith(("name:", "metric:", "description:")) else msg) from None
    print(f"registered {meta['name']}: {meta['n']} {meta['kind'].replace('_', ' ')} items, scored by "
          f"{meta['metric']}; run it with `playground eval --tasks {meta['name']} ...`")


def cmd_list(args) -> None:
    from evaluation import custom

    metas = custom.list_custom(_root(args))
    if args.json:
        print(json.dumps(list(metas.values()), indent=1))
        return
    if not metas:
        print("no custom benchmarks: `playground benchmark add --file F.jsonl --name N` registers one")
        return
    print(f"{'name':<24}{'kind':<17}{'metric':<13}{'items':>7}{'chance':>8}  description")
    for m in metas.values():
        print(f"{m['name']:<24}{m['kind']:<17}{m['metric']:<13}{m['n']:>7}{m['chance']:>8.3f}  {m['description']}")


def cmd_remove(args) -> None:
    from evaluation import custom

    meta = custom.remove(_root(args), args.name)
    print(f"removed {meta['name']} ({meta['n']} items)")
