"""evaluation/humaneval.py: pass@k against brute-force enumeration, the sandbox against what model-written
code does by accident (loops forever, allocates too much, opens a socket, writes files), the canonical
solutions against their own tests, and both generators (a stub HTTP server and a tiny in-process GPT-2).

The HTTP server here is a stub that stands in for vLLM, which the integration tests serve for real
(tests/integration/test_serve.py); a unit test cannot start vLLM. It answers /v1/completions in the
OpenAI shape and records each request body, so the tests can check what the generator asks for.
"""

import doctest
import importlib.util
import itertools
import json
import math
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from tinytok import byte_bpe
from transformers import GPT2Config, GPT2LMHeadModel

from evaluation import humaneval
from evaluation.benchdata import data_file
from evaluation.humaneval import (
    STOP,
    aggregate,
    complete,
    evaluate,
    hf_generator,
    load_problems,
    pass_at_k,
    run_candidate,
    served_generator,
    truncate,
)
from training.errors import UserError

ADD = {"task_id": "Test/0", "prompt": "def add(a, b):\n", "entry_point": "add",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}


@pytest.fixture(scope="module")
def problems():
    try:
        data_file("humaneval", fetch=False)
    except UserError as e:
        pytest.skip(str(e))  # `make install` fetches it; offline without it there is nothing to score
    return load_problems()


def canonical(problems):
    """A generator that answers every prompt with its reference solution, then a new top-level function
    that the stop sequences must cut off (it would shadow nothing, but it is not the completion)."""
    by_prompt = {p["prompt"]: p["canonical_solution"] for p in problems}
    return lambda prompt, n: [by_prompt[prompt] + "\ndef helper():\n    return 0\n"] * n


# --------------------------------------------------------------------------- pass@k


def test_the_worked_examples_in_the_docstrings_hold():
    assert doctest.testmod(humaneval).failed == 0


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the share of all k-subsets of the n samples that hold at least one pass."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_is_the_share_of_k_subsets_with_a_pass():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_known_values_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(10, 0, 10) == 0.0
    # n = 200 as in the paper: the binomials are ~1e59, the product form stays exact enough
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100), rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 1, 6), (5, 6, 1), (5, -1, 1), (5, 1, 0)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(UserError):
        pass_at_k(n, c, k)


def test_aggregate_is_the_mean_over_problems_with_its_standard_error():
    results = [{"task_id": t, "passed": p} for t, passes in (("a", [1, 1, 0, 0]), ("b", [0, 0, 0, 0]),
                                                            ("c", [1, 0, 0, 0])) for p in passes]
    got = aggregate(results, ks=(1, 2))
    per_problem = [0.5, 0.0, 0.25]
    assert got["n_problems"] == 3
    assert got["pass@1"] == pytest.approx(statistics.mean(per_problem))
    assert got["pass@1_stderr"] == pytest.approx(statistics.stdev(per_problem) / math.sqrt(3))
    assert got["pass@2"] == pytest.approx(statistics.mean([pass_at_k(4, c, 2) for c in (2, 0, 1)]))
    assert aggregate(results[:4], ks=(1,))["pass@1_stderr"] is None  # one problem: no spread to measure
    with pytest.raises(UserError, match="pass@5 needs at least 5 samples"):
        aggregate(results, ks=(5,))


# --------------------------------------------------------------------------- the sandbox


def test_the_first_20_canonical_solutions_pass(problems):
    got = evaluate(canonical(problems), limit=20)
    assert [s["result"] for s in got["samples"]] == ["passed"] * 20
    assert got["pass@1"] == 1.0 and got["pass@1_stderr"] == 0.0 and got["n_problems"] == 20
    assert "def helper" not in got["samples"][0]["completion"]  # cut at "\ndef"


@pytest.mark.slow
def test_all_164_canonical_solutions_pass(problems):
    got = evaluate(canonical(problems))  # about 17 s on a busy 2-core machine
    assert got["n_problems"] == 164
    assert [s["task_id"] for s in got["samples"] if not s["passed"]] == []


def test_a_wrong_completion_fails_with_a_one_line_reason():
    got = run_candidate(ADD, "    return a - b\n")
    assert got == {"passed": False, "result": "failed: AssertionError"}
    got = run_candidate(ADD, "    raise ValueError('no\\nthanks')\n")
    assert got == {"passed": False, "result": "failed: ValueError: no thanks"}
    assert run_candidate(ADD, "  return a + b\n    pass\n")["result"].startswith("failed: IndentationError")
    assert run_candidate(ADD, "    return a + b\n") == {"passed": True, "result": "passed"}


def test_exiting_early_is_not_passing():
    assert run_candidate(ADD, "    import sys; sys.exit(0)\n")["result"] == "failed: SystemExit: 0"
    got = run_candidate(ADD, "    import os; os._exit(0)\n")["result"]
    assert got == "failed: exited with code 0 before its tests finished"


def test_an_infinite_loop_times_out():
    start = time.monotonic()
    got = run_candidate(ADD, "    while True:\n        pass\n", timeout_s=1.0)
    assert got == {"passed": False, "result": "timed out"}
    assert time.monotonic() - start < 1.0 + 2


def test_allocating_2_gb_fails_under_the_memory_limit():
    got = run_candidate(ADD, "    x = bytearray(2 * 1024 ** 3)\n    return a + b\n", memory_mb=512)
    assert got == {"passed": False, "result": "failed: MemoryError"}


@pytest.fixture
def listener():
    """A socket listening on 127.0.0.1: without a sandbox, a candidate could connect to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.3)
        yield server


def _no_connection_arrived(server) -> bool:
    try:
        server.accept()[0].close()
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize("attempt", [
    "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)",
    "import _socket; s = _socket.socket(); s.connect(('127.0.0.1', {port}))",  # below the socket module
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)",
])
def test_a_completion_cannot_open_a_socket(listener, attempt):
    port = listener.getsockname()[1]
    got = run_candidate(ADD, f"    {attempt.format(port=port)}\n    return a + b\n")
    assert not got["passed"] and got["result"].startswith("failed: ") and "\n" not in got["result"]
    assert "network access is disabled in the sandbox" in got["result"]  # the Python-level guard, namespace or not
    assert _no_connection_arrived(listener)


def test_the_network_namespace_alone_cuts_loopback_where_this_machine_has_one(listener):
    prefix = humaneval._network_namespace()
    if not prefix:
        pytest.skip("unshare --net is not allowed here; only the Python-level guard applies")
    port = listener.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    assert subprocess.run([sys.executable, "-I", "-c", code], check=False, timeout=30).returncode == 0  # it is reachable...
    assert listener.accept()[0].close() is None
    done = subprocess.run([*prefix, sys.executable, "-I", "-c", code], check=False, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "OSError" in done.stderr  # ...but not from inside the namespace
    assert _no_connection_arrived(listener)


def test_files_written_inside_the_sandbox_go_with_it():
    code = ("    import os, tempfile\n"
            "    open('note.txt', 'w').write('x')\n"
            "    tempfile.mkstemp()\n"
            "    os.makedirs('a/b')\n"
            "    raise RuntimeError(os.getcwd())\n")
    got = run_candidate(ADD, code)
    assert got["result"].startswith("failed: RuntimeError: ")  # all three writes were allowed
    work = Path(got["result"].removeprefix("failed: RuntimeError: "))
    assert work.name == "work" and work.parent.name.startswith("humaneval-")
    assert not work.parent.exists()


@pytest.mark.parametrize("write", [
    "open({target!r}, 'w').write('x')",
    "import pathlib; pathlib.Path({target!r}).write_text('x')",
    "import os; os.close(os.open({target!r}, os.O_CREAT | os.O_WRONLY))",
    "import os; os.mkdir({target!r})",
    "import os; open('x', 'w').close(); os.rename('x', {target!r})",
    "import shutil; open('x', 'w').close(); shutil.copy('x', {target!r})",
])
def test_a_completion_cannot_write_outside_its_folder(tmp_path, write):
    target = str(tmp_path / "leaked")
    got = run_candidate(ADD, f"    {write.format(target=target)}\n    return a + b\n")
    assert got["result"].startswith("failed: PermissionError: writing outside the sandbox's folder is refused")
    assert list(tmp_path.iterdir()) == []


def test_a_completion_cannot_fill_the_disk():
    got = run_candidate(ADD, "    open('big', 'wb').write(bytes(32 * 1024 * 1024))\n")
    assert got["result"] == "failed: OSError: [Errno 27] File too large"


def test_a_completion_cannot_start_processes():
    got = run_candidate(ADD, "    import subprocess; subprocess.run(['true'])\n    return a + b\n")
    assert got["result"] == "failed: PermissionError: starting a process is disabled in the sandbox"


def test_the_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_API_KEY", "secret")
    got = run_candidate(ADD, "    import os\n    raise RuntimeError(sorted(os.environ))\n")
    assert got["result"] == "failed: RuntimeError: ['HOME', 'LANG', 'PATH', 'TMPDIR']"


# --------------------------------------------------------------------------- generation


def lm_eval_stop_sequences() -> list[str]:
    """The `until` list of lm-eval's own humaneval task, read from the installed package."""
    tasks = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / "tasks"
    text = (tasks / "humaneval" / "humaneval.yaml").read_text()
    block = re.search(r"until:\n((?:\s+- .*\n)+)", text).group(1)
    return [json.loads(line.strip()[2:]) for line in block.splitlines()]


def test_stop_sequences_are_lm_evals():
    assert list(STOP) == lm_eval_stop_sequences()


def test_truncate_cuts_at_the_first_top_level_stop():
    body = "    def inner():\n        return 1\n    # an indented comment\n    return inner()\n"
    assert truncate(body + "\nif __name__ == '__main__':\n    print(1)") == body
    assert truncate(body + "\n\n#top\nclass A: pass") == body + "\n"
    assert truncate(body) == body


class CompletionsStub(BaseHTTPRequestHandler):
    """POST /v1/completions: n choices (listed in reverse index order, as servers may), each the answer
    `reply(prompt)` followed by text past a stop sequence, as a server that ignored `stop` would send."""

    requests: ClassVar[list] = []
    reply = staticmethod(lambda prompt: "    return a + b\n")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, self.headers.get("Authorization"), body))
        if body["model"] != "demo":
            self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
            return
        text = self.reply(body["prompt"]) + "\nprint(add(1, 2))\n"
        choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(body["n"])][::-1]
        self._send(200, {"object": "text_completion", "model": body["model"], "choices": choices})

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    CompletionsStub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CompletionsStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", CompletionsStub
    server.shutdown()
    server.server_close()
    CompletionsStub.reply = staticmethod(lambda prompt: "    return a + b\n")


def test_served_generator_asks_for_n_samples_with_the_stop_sequences(stub):
    url, handler = stub
    generate = served_generator(url + "/", "demo", temperature=0.8, max_tokens=64, api_key="k")
    assert complete(ADD, generate, 3) == ["    return a + b\n"] * 3
    path, auth, body = handler.requests[-1]
    assert path == "/v1/completions" and auth == "Bearer k"
    assert body == {"model": "demo", "prompt": ADD["prompt"], "n": 3, "max_tokens": 64, "temperature": 0.8,
                    "stop": lm_eval_stop_sequences(), "top_p": 0.95}
    greedy = served_generator(url, "demo")
    assert greedy(ADD["prompt"], 1) == ["    return a + b\n\nprint(add(1, 2))\n"]  # raw; `complete` cuts
    assert "top_p" not in handler.requests[-1][2] and handler.requests[-1][2]["temperature"] == 0.0


def test_served_generator_reports_the_servers_error(stub):
    url, _ = stub
    with pytest.raises(RuntimeError, match="answered 404: The model `nope` does not exist"):
        served_generator(url, "nope")(ADD["prompt"], 1)


def test_evaluate_through_the_served_generator(stub, problems):
    url, handler = stub
    by_prompt = {p["prompt"]: p["canonical_solution"] for p in problems}
    handler.reply = staticmethod(lambda prompt: by_prompt[prompt] if prompt != problems[1]["prompt"] else "")
    got = evaluate(served_generator(url, "demo", temperature=0.8), limit=4, n=2, ks=(1, 2))
    assert got["n_problems"] == 4 and got["n"] == 2 and got["temperature"] == 0.8
    assert got["pass@1"] == got["pass@2"] == 0.75
    assert got["pass@1_stderr"] == pytest.approx(statistics.stdev([1, 0, 1, 1]) / 2)
    assert [s["task_id"] for s in got["samples"]] == [p["task_id"] for p in problems[:4] for _ in range(2)]
    assert set(got["samples"][0]) == {"task_id", "completion", "passed", "result"}
    assert got["samples"][2]["result"].startswith("failed: ")


def test_evaluate_refuses_what_cannot_be_estimated():
    greedy = served_generator("http://127.0.0.1:9", "demo")  # never called
    with pytest.raises(UserError, match="copies of one greedy answer"):
        evaluate(greedy, n=10, ks=(1, 10))
    with pytest.raises(UserError, match="n >= every k"):
        evaluate(greedy, n=1, ks=(1, 10))
    with pytest.raises(UserError, match="limit must be at least 1"):
        evaluate(greedy, limit=0)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE like the project's, learned from a few lines of Python (offline, milliseconds)."""
    lines = [ADD["prompt"] + "    return a + b\n", "def check(candidate):\n    assert candidate(2, 3) == 5\n",
             "from typing import List\n\n\nclass A:\n    pass\n# comment\nif x:\n    print(x)\n"]
    return byte_bpe(lines)


@pytest.fixture(scope="module")
def tiny_gpt2(tokenizer):
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=64,
                     bos_token_id=eos, eos_token_id=eos)
    return GPT2LMHeadModel(cfg).eval()


def test_hf_generator_returns_n_strings(tiny_gpt2, tokenizer, problems):
    greedy = hf_generator(tiny_gpt2, tokenizer, max_new_tokens=12)
    first, second = greedy(ADD["prompt"], 2)
    assert isinstance(first, str) and first == second
    sampled = hf_generator(tiny_gpt2, tokenizer, temperature=1.0, max_new_tokens=12)
    assert sampled.temperature == 1.0
    texts = complete(problems[0], sampled, 3)  # a prompt longer than the 64-token context: its end is kept
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    with pytest.raises(UserError, match="leaves no room for a prompt"):
        hf_generator(tiny_gpt2, tokenizer, max_new_tokens=64)
